//! `index_part.json`: what a timeline consists of in remote storage, written
//! by one generation (pure: encode, decode, validate; no I/O).
//!
//! An index names every layer file the timeline needs, each with its size,
//! CRC-32C and the generation whose upload holds it, plus the timeline's
//! metadata (both as fields and as the exact 128-byte local metadata file,
//! hex-encoded, so an attach recreates it bit for bit). A pageserver writes
//! an index only after every layer it names is uploaded, so an index never
//! points at a missing object. Format: `docs/remote-storage.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::generation::Generation;
use crate::wal::{self, WalObject};

/// Current format version (2 added `wal` and `branch_name`; version 1 indexes are read too).
pub const INDEX_FORMAT_VERSION: u32 = 2;
/// Oldest format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// One layer file as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerMetadata {
    /// Bytes.
    pub file_size: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
    /// The generation whose upload holds it (its object name suffix).
    pub generation: Generation,
}

/// The index of one timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPart {
    /// [`INDEX_FORMAT_VERSION`].
    pub version: u32,
    /// The generation that wrote this index.
    pub generation: Generation,
    /// The timeline id (32 hex digits).
    pub timeline_id: String,
    /// Everything at or below this LSN is in the listed layers.
    pub disk_consistent_lsn: u64,
    /// The previous record LSN at `disk_consistent_lsn`.
    pub prev_record_lsn: u64,
    /// Parent timeline id, if a branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_timeline_id: Option<String>,
    /// Branch point, if a branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_lsn: Option<u64>,
    /// GC cutoff: reads below it are refused.
    pub gc_cutoff_lsn: u64,
    /// LSN of the initdb import.
    pub initdb_lsn: u64,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// The local metadata file's exact bytes, hex.
    pub metadata_bytes: String,
    /// Layer file name (without generation suffix) → what was uploaded.
    pub layers: BTreeMap<String, LayerMetadata>,
    /// WAL above `disk_consistent_lsn` in remote WAL objects ([`crate::wal`]):
    /// a chain, oldest first, starting at or below `disk_consistent_lsn`
    /// (or at the stream start of a WAL source attached there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wal: Vec<WalObject>,
    /// The timeline's human name (version 2 on), so an attach elsewhere
    /// shows the same branch names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_name: Option<String>,
}

/// Why index bytes were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexDecodeError {
    /// Not valid JSON of the expected shape.
    #[error("index_part is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A version this build does not read.
    #[error(
        "index_part format version {0} is not supported (this build reads {OLDEST_READABLE_VERSION} to {INDEX_FORMAT_VERSION})"
    )]
    Version(u32),
    /// Valid JSON that breaks an invariant.
    #[error("index_part is inconsistent: {0}")]
    Inconsistent(String),
}

impl IndexPart {
    /// Encodes as pretty JSON (indexes are small; humans read them).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs and maps with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decodes and validates.
    pub fn decode(bytes: &[u8]) -> Result<IndexPart, IndexDecodeError> {
        let index: IndexPart = serde_json::from_slice(bytes)?;
        if !(OLDEST_READABLE_VERSION..=INDEX_FORMAT_VERSION).contains(&index.version) {
            return Err(IndexDecodeError::Version(index.version));
        }
        index.validate()?;
        Ok(index)
    }

    /// Checks the invariants: layers never come from a later generation than
    /// the index, the ancestor fields come together, the metadata bytes are
    /// hex of the right length.
    pub fn validate(&self) -> Result<(), IndexDecodeError> {
        let bad = |reason: String| Err(IndexDecodeError::Inconsistent(reason));
        if let Some((name, layer)) = self
            .layers
            .iter()
            .find(|(_, layer)| layer.generation > self.generation)
        {
            return bad(format!(
                "layer {name} is from generation {} but the index is generation {}",
                layer.generation, self.generation
            ));
        }
        if self.ancestor_timeline_id.is_some() != self.ancestor_lsn.is_some() {
            return bad("ancestor_timeline_id and ancestor_lsn must be given together".into());
        }
        if self.metadata().is_none() {
            return bad("metadata_bytes is not non-empty hex".into());
        }
        wal::validate_chain(&self.wal, self.generation).map_err(IndexDecodeError::Inconsistent)?;
        if self
            .wal
            .last()
            .is_some_and(|last| last.end_lsn <= self.disk_consistent_lsn)
        {
            return bad("the WAL objects end at or below disk_consistent_lsn".into());
        }
        if self.branch_name.is_some() && self.version < 2 {
            return bad("branch_name needs format version 2".into());
        }
        if self
            .branch_name
            .as_ref()
            .is_some_and(|name| name.is_empty() || name.chars().any(char::is_control))
        {
            return bad("branch_name is empty or has control characters".into());
        }
        Ok(())
    }

    /// Everything at or below this LSN is durable in remote storage: the
    /// end of the WAL objects' chain, or `disk_consistent_lsn` without one.
    pub fn remote_consistent_lsn(&self) -> u64 {
        wal::chain_end(&self.wal, self.disk_consistent_lsn)
    }

    /// The metadata file's bytes.
    pub fn metadata(&self) -> Option<Vec<u8>> {
        let text = self.metadata_bytes.as_bytes();
        if text.is_empty() || !text.len().is_multiple_of(2) {
            return None;
        }
        text.chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())
            })
            .collect()
    }

    /// Hex-encodes metadata bytes for [`IndexPart::metadata_bytes`].
    pub fn encode_metadata(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Total bytes of the layers.
    pub fn layers_size_bytes(&self) -> u64 {
        self.layers.values().map(|l| l.file_size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(generation: u32, layers: Vec<(String, u64, u32, u32)>) -> IndexPart {
        IndexPart {
            version: INDEX_FORMAT_VERSION,
            generation: Generation(generation),
            timeline_id: "fedcba9876543210fedcba9876543210".into(),
            disk_consistent_lsn: 0x1_0000,
            prev_record_lsn: 0xff00,
            ancestor_timeline_id: None,
            ancestor_lsn: None,
            gc_cutoff_lsn: 0,
            initdb_lsn: 0x100,
            pg_version: 15,
            metadata_bytes: IndexPart::encode_metadata(&[7u8; 128]),
            branch_name: Some("main".into()),
            layers: layers
                .into_iter()
                .map(|(name, size, crc, g)| {
                    (
                        name,
                        LayerMetadata {
                            file_size: size,
                            crc32c: crc,
                            generation: Generation(g),
                        },
                    )
                })
                .collect(),
            wal: Vec::new(),
        }
    }

    proptest! {
        #[test]
        fn round_trips(layers in proptest::collection::vec(("[a-z_0-9]{1,20}", any::<u64>(), any::<u32>(), 0u32..5), 0..10)) {
            let index = sample(5, layers);
            prop_assert_eq!(IndexPart::decode(&index.encode()).unwrap(), index);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexPart::decode(&bytes);
        }
    }

    #[test]
    fn invariants_are_checked() {
        let index = sample(1, vec![("a".into(), 1, 2, 2)]);
        assert!(matches!(
            IndexPart::decode(&index.encode()),
            Err(IndexDecodeError::Inconsistent(_))
        ));
        let mut index = sample(1, vec![]);
        index.metadata_bytes = "zz".into();
        assert!(IndexPart::decode(&index.encode()).is_err());
        let mut index = sample(1, vec![]);
        index.version = 9;
        assert!(matches!(
            IndexPart::decode(&index.encode()),
            Err(IndexDecodeError::Version(9))
        ));
        let text = String::from_utf8(sample(1, vec![]).encode()).unwrap();
        let extra = text.replacen('{', "{\"surprise\": 1,", 1);
        assert!(IndexPart::decode(extra.as_bytes()).is_err());
        assert_eq!(sample(1, vec![]).metadata().unwrap(), vec![7u8; 128]);
    }

    #[test]
    fn wal_objects_round_trip_and_define_the_remote_end() {
        let mut index = sample(2, vec![]);
        assert_eq!(index.remote_consistent_lsn(), 0x1_0000);
        // Without WAL objects the field is left out, as in version 1.
        assert!(!String::from_utf8(index.encode())
            .unwrap()
            .contains("\"wal\""));
        index.wal = vec![
            WalObject {
                start_lsn: 0xff00,
                end_lsn: 0x2_0000,
                crc32c: 7,
                generation: Generation(1),
                stream_lsn: 0xff00,
            },
            WalObject {
                start_lsn: 0x2_0000,
                end_lsn: 0x2_0010,
                crc32c: 8,
                generation: Generation(2),
                stream_lsn: 0xff00,
            },
        ];
        let decoded = IndexPart::decode(&index.encode()).unwrap();
        assert_eq!(decoded, index);
        assert_eq!(decoded.remote_consistent_lsn(), 0x2_0010);
        // A broken chain is refused.
        index.wal[1].start_lsn = 0x2_0001;
        assert!(IndexPart::decode(&index.encode()).is_err());
        // A version 1 index still reads.
        let mut old = sample(1, vec![]);
        old.version = 1;
        old.branch_name = None;
        assert_eq!(IndexPart::decode(&old.encode()).unwrap(), old);
    }

    #[test]
    fn version_1_indexes_without_a_branch_name_still_decode() {
        let mut old = sample(1, vec![("a".into(), 1, 2, 1)]);
        old.version = 1;
        old.branch_name = None;
        let text = String::from_utf8(old.encode()).unwrap();
        assert!(!text.contains("branch_name"), "{text}");
        assert_eq!(IndexPart::decode(text.as_bytes()).unwrap(), old);
        // A name in a version 1 index is not something a writer produced.
        old.branch_name = Some("main".into());
        assert!(IndexPart::decode(&old.encode()).is_err());
        let mut bad = sample(1, vec![]);
        bad.branch_name = Some("a\nb".into());
        assert!(IndexPart::decode(&bad.encode()).is_err());
    }
}
