//! The layer file format (delta and image share it), versions 1 and 2.
//!
//! ```text
//! 0    header, 128 bytes, CRC-32C over bytes 0..124 stored at 124
//! 128  blobs: per version, len u32 | crc32c(payload) u32 | payload
//!      v1 payload: the encoded Value
//!      v2 payload: codec u8 | body (0: the encoded Value; 1: raw_len u32 | zstd frame)
//! ...  index: entry_count × (key [18] | lsn u64 | blob offset u64), sorted by (key, lsn),
//!      CRC-32C of the whole index stored in the header
//! ```
//! The file ends exactly at the end of the index. All integers are
//! little-endian. Full byte layout and invariants: `docs/storage-format.md`.
//! The whole index is loaded and verified on open; each blob is verified
//! when read, so a flipped byte anywhere is an error naming the file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use postgres_wal::Lsn;

use crate::cache::PageCache;
use crate::error::{LayerFileError, LayerFormatError, LayerPart, ValueFormatError};
use crate::io::{FileIo, ReadAt};
use crate::key::{Key, KEY_SIZE};
use crate::layer::{LayerDesc, LayerKind};
use crate::value::Value;

/// First 8 bytes of every layer file.
pub const LAYER_MAGIC: [u8; 8] = *b"SEDLAYER";
/// Layer format version the writer produces.
pub const LAYER_FORMAT_VERSION: u16 = 2;
/// The first format version (uncompressed values); still read.
pub const LAYER_FORMAT_V1: u16 = 1;
/// Encoded values shorter than this are stored raw. Most versions are WAL
/// records of 64–200 bytes: zstd won back under 5% of their bytes (a
/// pgbench layer: 101,339 records of 64–127 bytes, 8.2 MB, saved 0.38 MB,
/// 2% of the file), but building its tables for each one was the largest
/// part of a flush's and a compaction's CPU (#16). Page images (8 KB) keep
/// compressing ~12×.
const COMPRESS_MIN_BYTES: usize = 512;
/// Largest decompressed value a reader accepts; bounds the allocation a
/// corrupt `raw_len` could ask for.
pub const MAX_RAW_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// zstd level: 1 is several times faster than the default 3 and within a
/// few percent of its ratio on page images.
const ZSTD_LEVEL: i32 = 1;
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 128;
/// Size of one index entry.
pub const INDEX_ENTRY_SIZE: usize = KEY_SIZE + 8 + 8;
const BLOB_HEADER_SIZE: u64 = 8;
const HEADER_CRC_OFFSET: usize = HEADER_SIZE - 4;
const KIND_DELTA: u8 = 1;
const KIND_IMAGE: u8 = 2;

/// One index entry: which version, and where its blob starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The key.
    pub key: Key,
    /// The version's LSN.
    pub lsn: Lsn,
    /// Offset of the blob in the file.
    pub offset: u64,
}

/// The decoded header of a layer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerHeader {
    /// Format version.
    pub format_version: u16,
    /// Kind and ranges.
    pub desc: LayerDesc,
    /// Number of versions.
    pub entry_count: u64,
    /// Where the index starts.
    pub index_offset: u64,
    /// CRC-32C of the index.
    pub index_crc: u32,
}

/// Encodes a layer file in the current format from versions sorted by
/// (key, lsn), each inside `desc`'s ranges. Returns an error string if the
/// input breaks those invariants (a bug in the caller; nothing is written).
pub fn encode_layer<'a>(
    desc: &LayerDesc,
    versions: impl IntoIterator<Item = (Key, Lsn, &'a Value)>,
) -> Result<Vec<u8>, String> {
    encode_layer_version(desc, versions, LAYER_FORMAT_VERSION)
}

/// [`encode_layer`] in a chosen format version (1 or 2). Version 1 is kept
/// so tests can prove the frozen v1 fixtures are still understood exactly.
pub fn encode_layer_version<'a>(
    desc: &LayerDesc,
    versions: impl IntoIterator<Item = (Key, Lsn, &'a Value)>,
    version: u16,
) -> Result<Vec<u8>, String> {
    if version != LAYER_FORMAT_V1 && version != LAYER_FORMAT_VERSION {
        return Err(format!("cannot write layer format version {version}"));
    }
    let versions = versions
        .into_iter()
        .map(|(key, lsn, value)| (key, lsn, Blob::Value(value)));
    encode_blobs(desc, versions, version)
}

/// Encodes a delta layer file in the current format from payloads read
/// out of other layer files ([`LayerFile::read_stored`]), copied as they
/// are: compaction moves versions between files without decompressing and
/// compressing them again. Same order and range rules as [`encode_layer`].
pub fn encode_delta_layer_from_stored<'a>(
    desc: &LayerDesc,
    versions: impl IntoIterator<Item = (Key, Lsn, &'a StoredPayload)>,
) -> Result<Vec<u8>, String> {
    if desc.kind != LayerKind::Delta {
        return Err(format!(
            "stored payloads only go into delta layers, not {desc}"
        ));
    }
    let versions = versions
        .into_iter()
        .map(|(key, lsn, stored)| (key, lsn, Blob::Stored(stored)));
    encode_blobs(desc, versions, LAYER_FORMAT_VERSION)
}

/// A version's value as the encoder takes it.
enum Blob<'a> {
    /// Encoded (and, in version 2, compressed when it pays) here.
    Value(&'a Value),
    /// A version-2 payload, written as it is.
    Stored(&'a StoredPayload),
}

/// A verified version-2 payload (codec byte and body) read from a layer
/// file, for [`encode_delta_layer_from_stored`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPayload(Bytes);

fn encode_blobs<'a>(
    desc: &LayerDesc,
    versions: impl IntoIterator<Item = (Key, Lsn, Blob<'a>)>,
    version: u16,
) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; HEADER_SIZE];
    let mut scratch = Vec::new();
    let mut compress = Compress::new();
    let mut index = Vec::new();
    let mut previous: Option<(Key, Lsn)> = None;
    for (key, lsn, value) in versions {
        if previous.is_some_and(|p| p >= (key, lsn)) {
            return Err(format!("versions out of order at {key} {lsn}"));
        }
        if !desc.key_range.contains(&key) || !desc.lsn_range.contains(&lsn) {
            return Err(format!("version {key} {lsn} outside {desc}"));
        }
        if desc.kind == LayerKind::Image && !matches!(value, Blob::Value(Value::Image(_))) {
            return Err(format!("image layer given a non-image value for {key}"));
        }
        previous = Some((key, lsn));
        let blob_start = out.len();
        index.extend_from_slice(key.as_bytes());
        index.extend_from_slice(&lsn.0.to_le_bytes());
        index.extend_from_slice(&(blob_start as u64).to_le_bytes());
        // Encode in place, then fill in the blob header (no extra copy).
        out.extend_from_slice(&[0u8; BLOB_HEADER_SIZE as usize]);
        match value {
            Blob::Value(value) if version == LAYER_FORMAT_V1 => value.encode_into(&mut out),
            Blob::Value(value) => {
                scratch.clear();
                value.encode_into(&mut scratch);
                encode_v2_payload(&scratch, &mut out, &mut compress);
            }
            Blob::Stored(_) if version == LAYER_FORMAT_V1 => {
                return Err(format!(
                    "stored payload for {key} {lsn} in a version 1 layer"
                ));
            }
            Blob::Stored(stored) => out.extend_from_slice(&stored.0),
        }
        let payload = &out[blob_start + BLOB_HEADER_SIZE as usize..];
        let len = u32::try_from(payload.len()).map_err(|_| format!("value too large at {key}"))?;
        let crc = crc32c::crc32c(payload);
        out[blob_start..blob_start + 4].copy_from_slice(&len.to_le_bytes());
        out[blob_start + 4..blob_start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let header = LayerHeader {
        format_version: version,
        desc: desc.clone(),
        entry_count: (index.len() / INDEX_ENTRY_SIZE) as u64,
        index_offset: out.len() as u64,
        index_crc: crc32c::crc32c(&index),
    };
    out.extend_from_slice(&index);
    out[..HEADER_SIZE].copy_from_slice(&header.encode());
    Ok(out)
}

/// One zstd context and frame buffer for every value of a layer file:
/// creating a context per value (`zstd::bulk::compress`) cost more than
/// compressing (issue #16's profile of a flush).
struct Compress {
    /// `None` if zstd could not allocate a context: values are stored raw.
    context: Option<zstd::bulk::Compressor<'static>>,
    frame: Vec<u8>,
}

impl Compress {
    fn new() -> Compress {
        Compress {
            context: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
            frame: Vec::new(),
        }
    }

    /// The zstd frame of `raw`, if compressing worked.
    fn frame_of(&mut self, raw: &[u8]) -> Option<&[u8]> {
        let context = self.context.as_mut()?;
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let len = context.compress_to_buffer(raw, &mut self.frame).ok()?;
        self.frame.get(..len)
    }
}

/// Appends a v2 payload for the encoded value `raw`: zstd when it pays.
fn encode_v2_payload(raw: &[u8], out: &mut Vec<u8>, compress: &mut Compress) {
    if raw.len() >= COMPRESS_MIN_BYTES && raw.len() <= MAX_RAW_VALUE_BYTES {
        if let Some(frame) = compress.frame_of(raw) {
            if frame.len() + 4 < raw.len() {
                out.push(CODEC_ZSTD);
                // Fits: raw.len() <= MAX_RAW_VALUE_BYTES < u32::MAX.
                out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                out.extend_from_slice(frame);
                return;
            }
        }
    }
    out.push(CODEC_RAW);
    out.extend_from_slice(raw);
}

thread_local! {
    /// One zstd decompression context per thread, not one per value:
    /// creating a context allocates and clears ~100 KB.
    static ZSTD_CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The encoded value inside a verified v2 payload.
fn decode_v2_payload(payload: Bytes) -> Result<Bytes, ValueFormatError> {
    let (&codec, body) = payload
        .split_first()
        .ok_or(ValueFormatError::Truncated { need: 1, have: 0 })?;
    match codec {
        CODEC_RAW => Ok(payload.slice(1..)),
        CODEC_ZSTD => {
            let (len, frame) =
                body.split_first_chunk::<4>()
                    .ok_or(ValueFormatError::Truncated {
                        need: 5,
                        have: payload.len(),
                    })?;
            let raw_len = u32::from_le_bytes(*len) as usize;
            if raw_len > MAX_RAW_VALUE_BYTES {
                return Err(ValueFormatError::RawLengthTooLarge {
                    raw_len,
                    limit: MAX_RAW_VALUE_BYTES,
                });
            }
            let raw = ZSTD_CONTEXT
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    let context = match &mut *slot {
                        Some(context) => context,
                        empty => empty.insert(zstd::bulk::Decompressor::new()?),
                    };
                    context.decompress(frame, raw_len)
                })
                .map_err(ValueFormatError::Decompress)?;
            if raw.len() != raw_len {
                return Err(ValueFormatError::DecompressedLength {
                    have: raw.len(),
                    expected: raw_len,
                });
            }
            Ok(Bytes::from(raw))
        }
        other => Err(ValueFormatError::UnknownCodec(other)),
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn key_at(b: &[u8], at: usize) -> Key {
    let mut k = [0u8; KEY_SIZE];
    k.copy_from_slice(&b[at..at + KEY_SIZE]);
    Key::from_bytes(k)
}

impl LayerHeader {
    /// The 128-byte encoded header.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&LAYER_MAGIC);
        b[8..10].copy_from_slice(&self.format_version.to_le_bytes());
        b[10] = match self.desc.kind {
            LayerKind::Delta => KIND_DELTA,
            LayerKind::Image => KIND_IMAGE,
        };
        b[12..30].copy_from_slice(self.desc.key_range.start.as_bytes());
        b[30..48].copy_from_slice(self.desc.key_range.end.as_bytes());
        b[48..56].copy_from_slice(&self.desc.lsn_range.start.0.to_le_bytes());
        b[56..64].copy_from_slice(&self.desc.lsn_range.end.0.to_le_bytes());
        b[64..72].copy_from_slice(&self.entry_count.to_le_bytes());
        b[72..80].copy_from_slice(&self.index_offset.to_le_bytes());
        b[80..84].copy_from_slice(&self.index_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..HEADER_CRC_OFFSET]);
        b[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates a header.
    pub fn decode(b: &[u8]) -> Result<LayerHeader, LayerFormatError> {
        let Some(b) = b.get(..HEADER_SIZE) else {
            return Err(LayerFormatError::Truncated {
                need: HEADER_SIZE as u64,
                have: b.len() as u64,
            });
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != LAYER_MAGIC {
            return Err(LayerFormatError::BadMagic { found: magic });
        }
        let stored = u32::from_le_bytes([b[124], b[125], b[126], b[127]]);
        let computed = crc32c::crc32c(&b[..HEADER_CRC_OFFSET]);
        if computed != stored {
            return Err(LayerFormatError::ChecksumMismatch {
                part: LayerPart::Header,
                stored,
                computed,
            });
        }
        let format_version = u16::from_le_bytes([b[8], b[9]]);
        if format_version != LAYER_FORMAT_VERSION && format_version != LAYER_FORMAT_V1 {
            return Err(LayerFormatError::UnsupportedVersion(format_version));
        }
        let kind = match b[10] {
            KIND_DELTA => LayerKind::Delta,
            KIND_IMAGE => LayerKind::Image,
            other => return Err(LayerFormatError::UnknownKind(other)),
        };
        let desc = LayerDesc {
            kind,
            key_range: key_at(b, 12)..key_at(b, 30),
            lsn_range: Lsn(u64_at(b, 48))..Lsn(u64_at(b, 56)),
        };
        if !desc.is_well_formed() {
            return Err(LayerFormatError::EmptyRange);
        }
        Ok(LayerHeader {
            format_version,
            desc,
            entry_count: u64_at(b, 64),
            index_offset: u64_at(b, 72),
            index_crc: u32::from_le_bytes([b[80], b[81], b[82], b[83]]),
        })
    }
}

/// An open, verified layer file.
pub struct LayerFile {
    path: PathBuf,
    header: LayerHeader,
    file: Arc<dyn ReadAt>,
    index: Vec<IndexEntry>,
}

impl LayerFile {
    /// Opens `path`, verifying header, index and (if given) that the header
    /// matches the ranges the file name claims.
    pub fn open(
        io: &dyn FileIo,
        path: &Path,
        expected: Option<&LayerDesc>,
    ) -> Result<LayerFile, LayerFileError> {
        let corrupt = |reason: LayerFormatError| LayerFileError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let io_err = |source| LayerFileError::Io {
            path: path.to_owned(),
            source,
        };
        let file = io.open_read(path).map_err(io_err)?;
        let file_len = file.len().map_err(io_err)?;
        if file_len < HEADER_SIZE as u64 {
            return Err(corrupt(LayerFormatError::Truncated {
                need: HEADER_SIZE as u64,
                have: file_len,
            }));
        }
        let mut header_bytes = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header_bytes, 0).map_err(io_err)?;
        let header = LayerHeader::decode(&header_bytes).map_err(corrupt)?;
        if let Some(expected) = expected {
            if *expected != header.desc {
                return Err(corrupt(LayerFormatError::WrongDesc {
                    expected: Box::new(expected.clone()),
                    found: Box::new(header.desc),
                }));
            }
        }
        let index_len = header
            .entry_count
            .checked_mul(INDEX_ENTRY_SIZE as u64)
            .filter(|len| header.index_offset.checked_add(*len) == Some(file_len))
            .filter(|_| header.index_offset >= HEADER_SIZE as u64)
            .ok_or_else(|| {
                corrupt(LayerFormatError::IndexBounds {
                    file_len,
                    entry_count: header.entry_count,
                    index_offset: header.index_offset,
                })
            })?;
        let mut index_bytes = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index_bytes, header.index_offset)
            .map_err(io_err)?;
        let computed = crc32c::crc32c(&index_bytes);
        if computed != header.index_crc {
            return Err(corrupt(LayerFormatError::ChecksumMismatch {
                part: LayerPart::Index,
                stored: header.index_crc,
                computed,
            }));
        }
        let index = decode_index(&index_bytes, &header).map_err(corrupt)?;
        Ok(LayerFile {
            path: path.to_owned(),
            header,
            file,
            index,
        })
    }

    /// The header.
    pub fn header(&self) -> &LayerHeader {
        &self.header
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All index entries, sorted by (key, lsn).
    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// Index positions of the versions of `key` with LSN in `lsns`.
    pub fn versions(&self, key: Key, lsns: Range<Lsn>) -> Range<usize> {
        let start = self
            .index
            .partition_point(|e| (e.key, e.lsn) < (key, lsns.start));
        let end = self
            .index
            .partition_point(|e| (e.key, e.lsn) < (key, lsns.end));
        start..end.max(start)
    }

    /// Reads and verifies the value of index entry `position`, through the
    /// cache (keyed by `cache_uid`).
    pub fn read_value(
        &self,
        position: usize,
        cache: Option<(&PageCache, u64)>,
    ) -> Result<Value, LayerFileError> {
        let (entry, end) = self.entry_and_end(position)?;
        if let Some((cache, uid)) = cache {
            if let Some(value) = cache.get((uid, entry.offset)) {
                // Eviction's LRU order must see cache hits as uses.
                self.file.note_access();
                return Ok(value);
            }
        }
        let value = self.read_blob(entry, end)?;
        if let Some((cache, uid)) = cache {
            cache.insert((uid, entry.offset), value.clone());
        }
        Ok(value)
    }

    /// Reads and verifies every value (a scrub); the first failure is
    /// returned. Reads only verify what they touch, so values shadowed by
    /// newer images are checked here.
    pub fn verify_all(&self) -> Result<(), LayerFileError> {
        (0..self.index.len()).try_for_each(|p| self.read_value(p, None).map(|_| ()))
    }

    /// Reads and verifies (length, CRC, codec) the payload of index entry
    /// `position` without decoding it, as a version-2 payload (a version-1
    /// value gets the raw codec): what compaction copies into its output.
    /// The value inside is checked when a reader decodes it.
    pub fn read_stored(&self, position: usize) -> Result<StoredPayload, LayerFileError> {
        let (entry, end) = self.entry_and_end(position)?;
        let payload = self.read_payload(entry, end)?;
        if self.header.format_version == LAYER_FORMAT_V1 {
            let mut v2 = Vec::with_capacity(payload.len() + 1);
            v2.push(CODEC_RAW);
            v2.extend_from_slice(&payload);
            return Ok(StoredPayload(Bytes::from(v2)));
        }
        match payload.first() {
            Some(&(CODEC_RAW | CODEC_ZSTD)) => Ok(StoredPayload(payload)),
            Some(&other) => Err(self.corrupt_value(entry, ValueFormatError::UnknownCodec(other))),
            None => {
                Err(self.corrupt_value(entry, ValueFormatError::Truncated { need: 1, have: 0 }))
            }
        }
    }

    /// Index entry `position` and where its blob ends.
    fn entry_and_end(&self, position: usize) -> Result<(&IndexEntry, u64), LayerFileError> {
        let entry = self
            .index
            .get(position)
            .ok_or_else(|| LayerFileError::Corrupt {
                path: self.path.clone(),
                reason: LayerFormatError::PositionOutOfRange {
                    position,
                    entries: self.index.len(),
                },
            })?;
        let end = self
            .index
            .get(position + 1)
            .map_or(self.header.index_offset, |next| next.offset);
        Ok((entry, end))
    }

    fn corrupt_value(&self, entry: &IndexEntry, source: ValueFormatError) -> LayerFileError {
        LayerFileError::Corrupt {
            path: self.path.clone(),
            reason: LayerFormatError::Value {
                key: entry.key,
                lsn: entry.lsn,
                source,
            },
        }
    }

    fn read_blob(&self, entry: &IndexEntry, end: u64) -> Result<Value, LayerFileError> {
        let corrupt = |source: ValueFormatError| self.corrupt_value(entry, source);
        let payload = self.read_payload(entry, end)?;
        let encoded = if self.header.format_version == LAYER_FORMAT_V1 {
            payload
        } else {
            decode_v2_payload(payload).map_err(corrupt)?
        };
        let value = Value::decode(encoded).map_err(|e| corrupt(e.into()))?;
        if self.header.desc.kind == LayerKind::Image && !matches!(value, Value::Image(_)) {
            return Err(corrupt(ValueFormatError::WrongKind));
        }
        Ok(value)
    }

    /// The blob's payload after checking its length and CRC.
    fn read_payload(&self, entry: &IndexEntry, end: u64) -> Result<Bytes, LayerFileError> {
        let corrupt = |source: ValueFormatError| self.corrupt_value(entry, source);
        // The index decoder guarantees offsets increase and stay below the
        // index, so this cannot underflow.
        let mut blob = vec![0u8; (end - entry.offset) as usize];
        self.file
            .read_exact_at(&mut blob, entry.offset)
            .map_err(|source| LayerFileError::Io {
                path: self.path.clone(),
                source,
            })?;
        let len = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as u64;
        let crc = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]);
        if len + BLOB_HEADER_SIZE != blob.len() as u64 {
            return Err(corrupt(ValueFormatError::LengthMismatch {
                stored: len,
                expected: blob.len() as u64 - BLOB_HEADER_SIZE,
            }));
        }
        let payload = Bytes::from(blob).slice(BLOB_HEADER_SIZE as usize..);
        let computed = crc32c::crc32c(&payload);
        if computed != crc {
            return Err(corrupt(ValueFormatError::ChecksumMismatch {
                stored: crc,
                computed,
            }));
        }
        Ok(payload)
    }
}

/// Decodes the index and checks the invariants readers rely on: sorted
/// unique (key, lsn) inside the header's ranges, blob offsets strictly
/// increasing with room for a blob header, all before the index.
fn decode_index(bytes: &[u8], header: &LayerHeader) -> Result<Vec<IndexEntry>, LayerFormatError> {
    let mut index = Vec::with_capacity(bytes.len() / INDEX_ENTRY_SIZE);
    let mut min_offset = HEADER_SIZE as u64;
    for chunk in bytes.chunks_exact(INDEX_ENTRY_SIZE) {
        let entry = IndexEntry {
            key: key_at(chunk, 0),
            lsn: Lsn(u64_at(chunk, KEY_SIZE)),
            offset: u64_at(chunk, KEY_SIZE + 8),
        };
        if let Some(prev) = index.last().map(|p: &IndexEntry| (p.key, p.lsn)) {
            if prev >= (entry.key, entry.lsn) {
                return Err(LayerFormatError::IndexOutOfOrder {
                    key: entry.key,
                    lsn: entry.lsn,
                });
            }
        }
        if !header.desc.key_range.contains(&entry.key)
            || !header.desc.lsn_range.contains(&entry.lsn)
        {
            return Err(LayerFormatError::IndexEntryOutsideRanges {
                key: entry.key,
                lsn: entry.lsn,
            });
        }
        if entry.offset < min_offset {
            return Err(LayerFormatError::BlobOffsetOutOfOrder {
                offset: entry.offset,
            });
        }
        min_offset = entry.offset.saturating_add(BLOB_HEADER_SIZE);
        index.push(entry);
    }
    if min_offset > header.index_offset {
        return Err(LayerFormatError::BlobOverlapsIndex);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFileIo;
    use std::fs;

    fn desc() -> LayerDesc {
        LayerDesc {
            kind: LayerKind::Delta,
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(10)..Lsn(20),
        }
    }

    fn sample_file(dir: &Path) -> (PathBuf, Vec<(Key, Lsn, Value)>) {
        let versions: Vec<_> = (0..5u8)
            .flat_map(|k| {
                (0..3u64).map(move |l| {
                    let key = Key::from_bytes([k; KEY_SIZE]);
                    (
                        key,
                        Lsn(10 + l),
                        Value::Image(Bytes::from(vec![k; 10 + l as usize])),
                    )
                })
            })
            .collect();
        let bytes = encode_layer(&desc(), versions.iter().map(|(k, l, v)| (*k, *l, v))).unwrap();
        let path = dir.join(desc().file_name());
        fs::write(&path, bytes).unwrap();
        (path, versions)
    }

    #[test]
    fn reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let (path, versions) = sample_file(dir.path());
        let file = LayerFile::open(&StdFileIo, &path, Some(&desc())).unwrap();
        assert_eq!(file.index().len(), versions.len());
        for (key, lsn, value) in &versions {
            let positions = file.versions(*key, *lsn..Lsn(lsn.0 + 1));
            assert_eq!(positions.len(), 1);
            assert_eq!(&file.read_value(positions.start, None).unwrap(), value);
        }
        let key = versions[3].0;
        assert_eq!(file.versions(key, Lsn(0)..Lsn(100)).len(), 3);
        assert_eq!(file.versions(key, Lsn(11)..Lsn(12)).len(), 1);
        assert!(file.versions(key, Lsn(13)..Lsn(100)).is_empty());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, versions) = sample_file(dir.path());
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            let result = LayerFile::open(&StdFileIo, &path, Some(&desc())).and_then(|file| {
                (0..versions.len())
                    .map(|p| file.read_value(p, None))
                    .collect::<Result<Vec<_>, _>>()
            });
            let err = result.expect_err(&format!("flip at byte {i} went unnoticed"));
            assert!(err.to_string().contains(&desc().file_name()), "{err}");
            assert!(matches!(err, LayerFileError::Corrupt { .. }), "{err}");
        }
    }

    /// A small layer of every value shape (page images compressed and not,
    /// WAL records, derived operations), for the flip property below.
    fn mixed_layer() -> (LayerDesc, Vec<(Key, Lsn, Value)>, Vec<u8>) {
        use crate::value::DerivedOp;
        let versions = vec![
            (
                Key::from_bytes([1; KEY_SIZE]),
                Lsn(10),
                Value::Image(Bytes::from(vec![3u8; 1000])),
            ),
            (
                Key::from_bytes([1; KEY_SIZE]),
                Lsn(12),
                Value::WalRecord {
                    will_init: false,
                    rec: Bytes::from_static(b"record"),
                },
            ),
            (
                Key::from_bytes([2; KEY_SIZE]),
                Lsn(11),
                Value::Derived(DerivedOp::ClogSetStatus {
                    status: 1,
                    slots: vec![3, 4],
                }),
            ),
            (
                Key::from_bytes([3; KEY_SIZE]),
                Lsn(13),
                Value::Image(Bytes::from_static(b"small")),
            ),
        ];
        let bytes = encode_layer(&desc(), versions.iter().map(|(k, l, v)| (*k, *l, v))).unwrap();
        (desc(), versions, bytes)
    }

    proptest::proptest! {
        /// Changing any one byte of a layer file to any other value makes
        /// opening it or reading some value fail with `Corrupt` naming the
        /// file (checksums cover every byte); no read returns a value that
        /// was not written, and nothing panics.
        #[test]
        fn any_changed_byte_is_corrupt_never_a_wrong_value(
            at in proptest::prelude::any::<proptest::sample::Index>(),
            mask in 1u8..=255,
        ) {
            use crate::io::{FileIo, MemoryFileIo};
            let (desc, versions, mut bytes) = mixed_layer();
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
            let io = MemoryFileIo::new();
            let dir = Path::new("/d");
            io.create_dir_all(dir).unwrap();
            let path = dir.join(desc.file_name());
            io.write_file(&path, &bytes).unwrap();
            let mut failure = None;
            match LayerFile::open(&io, &path, Some(&desc)) {
                Err(e) => failure = Some(e),
                Ok(file) => {
                    for (position, entry) in file.index().iter().enumerate() {
                        match file.read_value(position, None) {
                            Ok(value) => {
                                let written = versions
                                    .iter()
                                    .find(|(k, l, _)| *k == entry.key && *l == entry.lsn);
                                proptest::prop_assert_eq!(Some(&value), written.map(|(_, _, v)| v));
                            }
                            Err(e) => failure = failure.or(Some(e)),
                        }
                    }
                }
            }
            let err = failure.unwrap_or_else(|| panic!("byte {at} ^ {mask:#x} went unnoticed"));
            proptest::prop_assert!(matches!(err, LayerFileError::Corrupt { .. }), "{}", err);
            proptest::prop_assert!(err.to_string().contains(&desc.file_name()), "{}", err);
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sample_file(dir.path());
        let good = fs::read(&path).unwrap();
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(
                LayerFile::open(&StdFileIo, &path, None).is_err(),
                "length {len}"
            );
        }
    }

    proptest::proptest! {
        /// Random damage (several bytes overwritten, possibly truncated)
        /// never panics and never yields a value that was not written;
        /// the larger values are zstd-compressed, so damage reaches the
        /// decompressor's input too.
        #[test]
        fn random_damage_never_panics_or_lies(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
            cut in proptest::prelude::any::<usize>(),
        ) {
            use crate::io::{FileIo, MemoryFileIo};
            let io = MemoryFileIo::new();
            let dir = Path::new("/d");
            io.create_dir_all(dir).unwrap();
            let versions: Vec<_> = (0..4u8)
                .map(|k| (Key::from_bytes([k; KEY_SIZE]), Lsn(10 + u64::from(k)), Value::Image(Bytes::from(vec![k; 20 + 700 * usize::from(k)]))))
                .collect();
            let mut bytes = encode_layer(&desc(), versions.iter().map(|(k, l, v)| (*k, *l, v))).unwrap();
            for (at, byte) in edits {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            bytes.truncate(bytes.len() - cut % 4);
            let path = dir.join(desc().file_name());
            io.write_file(&path, &bytes).unwrap();
            if let Ok(file) = LayerFile::open(&io, &path, None) {
                for (position, entry) in file.index().iter().enumerate() {
                    // The copy path checks less but must not panic either.
                    let _ = file.read_stored(position);
                    if let Ok(value) = file.read_value(position, None) {
                        let original = versions.iter().find(|(k, l, _)| *k == entry.key && *l == entry.lsn);
                        proptest::prop_assert_eq!(Some(&value), original.map(|(_, _, v)| v));
                    }
                }
            }
        }
    }

    #[test]
    fn v2_compresses_large_values_and_v1_stays_readable() {
        let page = Value::Image(Bytes::from(vec![7u8; 8192]));
        let small = Value::Image(Bytes::from_static(b"tiny"));
        let versions = [(Key::MIN, Lsn(10), &page), (Key::MIN, Lsn(11), &small)];
        let v2 = encode_layer(&desc(), versions).unwrap();
        let v1 = encode_layer_version(&desc(), versions, LAYER_FORMAT_V1).unwrap();
        assert!(v2.len() < 512, "{} bytes", v2.len());
        assert!(v1.len() > 8192);
        for bytes in [v1, v2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(desc().file_name());
            fs::write(&path, bytes).unwrap();
            let file = LayerFile::open(&StdFileIo, &path, Some(&desc())).unwrap();
            assert_eq!(file.read_value(0, None).unwrap(), page);
            assert_eq!(file.read_value(1, None).unwrap(), small);
        }
        assert!(encode_layer_version(&desc(), versions, 3).is_err());
    }

    /// Compaction's copy path: payloads read with `read_stored` from a v2
    /// and a v1 file go into a new delta file unchanged (a compressed page
    /// stays the same zstd frame) and read back as the same values.
    #[test]
    fn stored_payloads_are_copied_verbatim_and_read_back_equal() {
        let page = Value::Image(Bytes::from(vec![7u8; 8192]));
        let record = Value::WalRecord {
            will_init: false,
            rec: Bytes::from(vec![5u8; 300]),
        };
        let versions = [(Key::MIN, Lsn(10), &page), (Key::MIN, Lsn(11), &record)];
        for version in [LAYER_FORMAT_V1, LAYER_FORMAT_VERSION] {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("source");
            fs::write(
                &source,
                encode_layer_version(&desc(), versions, version).unwrap(),
            )
            .unwrap();
            let source = LayerFile::open(&StdFileIo, &source, None).unwrap();
            let stored: Vec<StoredPayload> =
                (0..2).map(|p| source.read_stored(p).unwrap()).collect();
            if version == LAYER_FORMAT_VERSION {
                assert_eq!(stored[0].0[0], CODEC_ZSTD, "the page stays compressed");
            }
            let bytes = encode_delta_layer_from_stored(
                &desc(),
                [
                    (Key::MIN, Lsn(10), &stored[0]),
                    (Key::MIN, Lsn(11), &stored[1]),
                ],
            )
            .unwrap();
            let copy = dir.path().join(desc().file_name());
            fs::write(&copy, bytes).unwrap();
            let copy = LayerFile::open(&StdFileIo, &copy, Some(&desc())).unwrap();
            for (position, (_, _, value)) in versions.iter().enumerate() {
                assert_eq!(copy.read_stored(position).unwrap(), stored[position]);
                assert_eq!(&&copy.read_value(position, None).unwrap(), value);
            }
        }
        let image = LayerDesc {
            kind: LayerKind::Image,
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(10)..Lsn(11),
        };
        assert!(encode_delta_layer_from_stored(&image, []).is_err());
        let out_of_order = StoredPayload(Bytes::from_static(&[CODEC_RAW, 0]));
        assert!(encode_delta_layer_from_stored(
            &desc(),
            [
                (Key::MIN, Lsn(11), &out_of_order),
                (Key::MIN, Lsn(10), &out_of_order)
            ]
        )
        .is_err());
    }

    /// #16: WAL-record-sized values are stored raw even when zstd could
    /// shrink them a little (compressing each cost more CPU than the flush
    /// itself); page-sized values are compressed.
    #[test]
    fn record_sized_values_are_stored_raw_and_pages_compressed() {
        let record = Value::WalRecord {
            will_init: false,
            rec: Bytes::from(vec![5u8; 300]),
        };
        let page = Value::Image(Bytes::from(vec![7u8; 8192]));
        let versions = [(Key::MIN, Lsn(10), &record), (Key::MIN, Lsn(11), &page)];
        let bytes = encode_layer(&desc(), versions).unwrap();
        let codec_at = |blob: usize| bytes[blob + BLOB_HEADER_SIZE as usize];
        assert_eq!(codec_at(HEADER_SIZE), CODEC_RAW);
        let record_len =
            u32::from_le_bytes(bytes[HEADER_SIZE..HEADER_SIZE + 4].try_into().unwrap());
        let page_blob = HEADER_SIZE + BLOB_HEADER_SIZE as usize + record_len as usize;
        assert_eq!(codec_at(page_blob), CODEC_ZSTD);
    }

    #[test]
    fn bad_zstd_payloads_are_errors() {
        use ValueFormatError as E;
        let decode = |bytes: &[u8]| decode_v2_payload(Bytes::copy_from_slice(bytes));
        assert!(matches!(
            decode(&[]),
            Err(E::Truncated { need: 1, have: 0 })
        ));
        assert!(matches!(decode(&[9, 1, 2]), Err(E::UnknownCodec(9))));
        assert!(matches!(
            decode(&[CODEC_ZSTD, 1]),
            Err(E::Truncated { need: 5, have: 2 })
        ));
        let huge = [CODEC_ZSTD, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0];
        assert!(matches!(
            decode(&huge),
            Err(E::RawLengthTooLarge {
                raw_len: 0xFFFF_FFFF,
                ..
            })
        ));
        assert!(matches!(
            decode(&[CODEC_ZSTD, 10, 0, 0, 0, 1, 2, 3]),
            Err(E::Decompress(_))
        ));
        let mut lying = vec![CODEC_ZSTD, 10, 0, 0, 0];
        lying.extend(zstd::bulk::compress(&[1u8; 100], 1).unwrap());
        // The frame holds more than the header allows: zstd refuses it or
        // the lengths differ; either way an error, never a value.
        assert!(matches!(
            decode(&lying),
            Err(E::Decompress(_) | E::DecompressedLength { .. })
        ));
    }

    #[test]
    fn header_errors_are_typed() {
        use LayerFormatError as E;
        let good = LayerHeader {
            format_version: LAYER_FORMAT_VERSION,
            desc: desc(),
            entry_count: 0,
            index_offset: HEADER_SIZE as u64,
            index_crc: 0,
        }
        .encode();
        assert!(matches!(
            LayerHeader::decode(&good[..100]),
            Err(E::Truncated {
                need: 128,
                have: 100
            })
        ));
        let mut bad = good;
        bad[0] = b'X';
        assert!(matches!(LayerHeader::decode(&bad), Err(E::BadMagic { .. })));
        let mut bad = good;
        bad[64] ^= 1;
        assert!(matches!(
            LayerHeader::decode(&bad),
            Err(E::ChecksumMismatch {
                part: LayerPart::Header,
                ..
            })
        ));
        let reencoded = |version: u16| {
            let mut header = LayerHeader::decode(&good).unwrap();
            header.format_version = version;
            header.encode()
        };
        assert!(matches!(
            LayerHeader::decode(&reencoded(3)),
            Err(E::UnsupportedVersion(3))
        ));
    }

    #[test]
    fn unsorted_input_is_refused() {
        let v = Value::Image(Bytes::new());
        let versions = [(Key::MAX, Lsn(10), &v), (Key::MIN, Lsn(10), &v)];
        assert!(encode_layer(&desc(), versions).is_err());
        let outside = [(Key::MIN, Lsn(30), &v)];
        assert!(encode_layer(&desc(), outside).is_err());
    }
}
