//! Layers: sets of versions covering a key range × LSN range.
//!
//! - [`memory::InMemoryLayer`]: the open layer receiving puts, and frozen
//!   ones waiting to be flushed.
//! - [`file::LayerFile`]: an immutable delta or image layer file.
//!
//! [`LayerDesc`] names a layer file; the name alone tells which ranges the
//! file covers, so a timeline's layer map is built from a directory listing
//! and files are opened (and verified) lazily on first read.

pub mod file;
pub mod memory;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use postgres_wal::Lsn;

use crate::error::LayerFileError;
use crate::io::FileIo;
use crate::key::Key;

/// Delta or image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Every version of keys in a key range with LSNs in an LSN range.
    Delta,
    /// The value of every existing key in a key range at one LSN. Complete:
    /// a key in the range absent from the image had no value at that LSN.
    Image,
}

/// Which ranges a layer covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LayerDesc {
    /// Delta or image.
    pub kind: LayerKind,
    /// Keys covered, half-open.
    pub key_range: Range<Key>,
    /// LSNs covered, half-open; an image at L covers `L..L+1`.
    pub lsn_range: Range<Lsn>,
}

impl LayerDesc {
    /// The LSN of an image layer (start of its range).
    pub fn image_lsn(&self) -> Lsn {
        self.lsn_range.start
    }

    /// The file name: `delta_<key start>-<key end>__<lsn start>-<lsn end>` or
    /// `image_<key start>-<key end>__<lsn>`, keys as 36 hex digits and LSNs
    /// as 16.
    pub fn file_name(&self) -> String {
        let keys = format!("{}-{}", self.key_range.start, self.key_range.end);
        match self.kind {
            LayerKind::Delta => format!(
                "delta_{keys}__{:016X}-{:016X}",
                self.lsn_range.start.0, self.lsn_range.end.0
            ),
            LayerKind::Image => format!("image_{keys}__{:016X}", self.lsn_range.start.0),
        }
    }

    /// Parses a name written by [`LayerDesc::file_name`]; `None` for any
    /// other name (including temp files).
    pub fn parse_file_name(name: &str) -> Option<LayerDesc> {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("delta_") {
            (LayerKind::Delta, rest)
        } else {
            (LayerKind::Image, name.strip_prefix("image_")?)
        };
        let (keys, lsns) = rest.split_once("__")?;
        let (key_start, key_end) = keys.split_once('-')?;
        let key_range = key_start.parse().ok()?..key_end.parse().ok()?;
        let parse_lsn = |s: &str| {
            (s.len() == 16)
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
                .map(Lsn)
        };
        let lsn_range = match kind {
            LayerKind::Delta => {
                let (start, end) = lsns.split_once('-')?;
                parse_lsn(start)?..parse_lsn(end)?
            }
            LayerKind::Image => {
                let lsn = parse_lsn(lsns)?;
                lsn..lsn.checked_add(1)?
            }
        };
        let desc = LayerDesc {
            kind,
            key_range,
            lsn_range,
        };
        desc.is_well_formed().then_some(desc)
    }

    /// Non-empty ranges.
    pub fn is_well_formed(&self) -> bool {
        self.key_range.start < self.key_range.end && self.lsn_range.start < self.lsn_range.end
    }

    /// Whether `key` is in the key range.
    pub fn contains_key(&self, key: &Key) -> bool {
        self.key_range.contains(key)
    }
}

impl fmt::Display for LayerDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

static NEXT_LAYER_UID: AtomicU64 = AtomicU64::new(1);

/// A layer file known to a timeline, opened on first use. Loading verifies
/// the header and index checksums and that they match the name; a failure is
/// reported on every read attempt and the file is never served.
pub struct LayerHandle {
    desc: LayerDesc,
    path: PathBuf,
    uid: u64,
    loaded: Mutex<Option<Arc<file::LayerFile>>>,
}

impl LayerHandle {
    /// A handle for the file at `path` described by `desc`.
    pub fn new(desc: LayerDesc, path: PathBuf) -> LayerHandle {
        LayerHandle {
            desc,
            path,
            uid: NEXT_LAYER_UID.fetch_add(1, Ordering::Relaxed),
            loaded: Mutex::new(None),
        }
    }

    /// The ranges covered.
    pub fn desc(&self) -> &LayerDesc {
        &self.desc
    }

    /// The file path.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Process-unique id (page cache key).
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The opened file, loading it on first call.
    pub fn load(&self, io: &dyn FileIo) -> Result<Arc<file::LayerFile>, LayerFileError> {
        let mut loaded = self.loaded.lock();
        if let Some(file) = loaded.as_ref() {
            return Ok(file.clone());
        }
        let file = Arc::new(file::LayerFile::open(io, &self.path, Some(&self.desc))?);
        *loaded = Some(file.clone());
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let delta = LayerDesc {
            kind: LayerKind::Delta,
            key_range: Key::MIN..Key::checkpoint(),
            lsn_range: Lsn(0x10)..Lsn(0x1_0000_0020),
        };
        let image = LayerDesc {
            kind: LayerKind::Image,
            key_range: Key::db_dir()..Key::MAX,
            lsn_range: Lsn(7)..Lsn(8),
        };
        for desc in [delta, image] {
            assert_eq!(LayerDesc::parse_file_name(&desc.file_name()), Some(desc));
        }
    }

    #[test]
    fn other_names_are_not_layers() {
        let delta = LayerDesc {
            kind: LayerKind::Delta,
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(1)..Lsn(2),
        };
        let name = delta.file_name();
        for bad in [
            format!("{name}.___temp"),
            "metadata".to_string(),
            name.replace("delta_", "image_"),
            name.replace("0000000000000002", "0000000000000001"),
        ] {
            assert_eq!(LayerDesc::parse_file_name(&bad), None, "{bad}");
        }
    }
}
