//! Evicted layer files and their download on first read: a [`FileIo`]
//! wrapper, so the rest of the store never knows a file was absent.
//!
//! Evicting a layer file (`OnDemandIo::evict`) replaces `<layer>` by a small
//! marker `<layer>.evicted` recording its size, CRC-32C and where a copy
//! lives (an opaque string only the [`LayerDownloader`] understands). From
//! then on, through this wrapper:
//!
//! - `list_dir` shows the marker as the layer itself, so a timeline reopened
//!   after a restart still has the layer in its map;
//! - `open_read` of the layer succeeds without I/O and answers `len` from the
//!   marker (physical size accounting downloads nothing); the first
//!   positioned read downloads the file through the [`LayerDownloader`],
//!   checks size and CRC-32C, installs it with [`write_atomic`] (temp file,
//!   fsync, rename, directory fsync), removes the marker and reads;
//! - `remove_file` of the layer (GC, compaction) removes the marker too.
//!
//! Each opened layer file records its last use (a read, or a read served
//! from the page cache, reported through `ReadAt::note_access`) for the
//! eviction's least-recently-used order.
//!
//! Concurrent readers of one evicted layer download it once: downloads of a
//! path are serialised by a per-path gate and the second reader finds the
//! file installed. Readers opened before an eviction keep reading from the
//! file they opened (layer files are immutable); eviction drops the handles
//! this wrapper keeps so the space is freed once those reads end.
//!
//! Storage does no network I/O itself and knows nothing of object stores or
//! async runtimes: the pageserver supplies the downloader.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::{write_atomic, DirEntry, FileIo, ReadAt};
use crate::layer::LayerDesc;

/// Suffix of the marker that stands for an evicted layer file.
pub const EVICTED_SUFFIX: &str = ".evicted";

const MARKER_MAGIC: &str = "sediment-evicted-layer v1";

/// What the marker of an evicted layer records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictedMarker {
    /// Size of the layer file in bytes.
    pub file_size: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
    /// Where a copy lives (for the pageserver: the object path).
    pub source: String,
}

impl EvictedMarker {
    /// Text form: a magic line, then `size`, `crc32c` (hex) and `source`
    /// lines (see `docs/remote-storage.md`).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MARKER_MAGIC}\nsize {}\ncrc32c {:08x}\nsource {}\n",
            self.file_size, self.crc32c, self.source
        )
        .into_bytes()
    }

    /// Parses [`EvictedMarker::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<EvictedMarker, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let mut lines = text.lines();
        if lines.next() != Some(MARKER_MAGIC) {
            return Err(format!("first line is not {MARKER_MAGIC:?}"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| format!("missing {name} line"))
        };
        let size = field("size")?;
        let crc = field("crc32c")?;
        let source = field("source")?;
        Ok(EvictedMarker {
            file_size: size.parse().map_err(|_| format!("bad size {size:?}"))?,
            crc32c: u32::from_str_radix(&crc, 16).map_err(|_| format!("bad crc32c {crc:?}"))?,
            source,
        })
    }
}

/// Fetches the bytes of an evicted layer file. Called from the store's
/// (synchronous) read path; the implementation may block.
pub trait LayerDownloader: Send + Sync + fmt::Debug {
    /// The whole file `path` (its copy at `marker.source`).
    fn download(&self, path: &Path, marker: &EvictedMarker) -> io::Result<Vec<u8>>;
}

/// Counters of the downloads done through one [`OnDemandIo`].
#[derive(Debug, Default)]
pub struct DownloadCounters {
    /// Layer files downloaded.
    pub count: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Time spent downloading and installing, microseconds.
    pub micros: AtomicU64,
}

/// The marker path of a layer file path.
pub fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(EVICTED_SUFFIX);
    PathBuf::from(name)
}

fn is_layer_path(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| LayerDesc::parse_file_name(n).is_some())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

struct State {
    inner: Arc<dyn FileIo>,
    downloader: Arc<dyn LayerDownloader>,
    /// One gate per layer path being downloaded or evicted.
    gates: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// Open layer files, so eviction can drop their handles.
    open: Mutex<HashMap<PathBuf, Vec<Weak<LazyFile>>>>,
    counters: DownloadCounters,
}

/// A [`FileIo`] that evicts layer files and downloads them back on demand.
#[derive(Clone)]
pub struct OnDemandIo {
    state: Arc<State>,
}

impl fmt::Debug for OnDemandIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnDemandIo")
            .field("inner", &self.state.inner)
            .finish_non_exhaustive()
    }
}

impl State {
    fn gate(&self, path: &Path) -> Arc<Mutex<()>> {
        let mut gates = self.gates.lock();
        gates.retain(|_, g| Arc::strong_count(g) > 1);
        gates.entry(path.to_owned()).or_default().clone()
    }

    /// Opens `path`, downloading it first if it is evicted.
    fn fetch(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        let gate = self.gate(path);
        // Held across the download on purpose: it is the single-flight
        // gate of this one file; other readers of it must wait anyway.
        let _held = gate.lock();
        match self.inner.open_read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let marker_file = marker_path(path);
        let marker = EvictedMarker::decode(&self.inner.read_file(&marker_file)?)
            .map_err(|e| invalid(format!("{}: {e}", marker_file.display())))?;
        let started = std::time::Instant::now();
        let data = self.downloader.download(path, &marker)?;
        let crc = crc32c::crc32c(&data);
        if data.len() as u64 != marker.file_size || crc != marker.crc32c {
            return Err(invalid(format!(
                "downloaded {} from {}: expected {} bytes with CRC-32C {:08x}, got {} bytes with {crc:08x}",
                path.display(),
                marker.source,
                marker.file_size,
                marker.crc32c,
                data.len()
            )));
        }
        let (dir, name) = split(path)?;
        write_atomic(self.inner.as_ref(), dir, name, &data)?;
        self.inner.remove_file(&marker_file)?;
        self.inner.sync_dir(dir)?;
        let c = &self.counters;
        c.count.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        c.micros.fetch_add(micros, Ordering::Relaxed);
        self.inner.open_read(path)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn split(path: &Path) -> io::Result<(&Path, &str)> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(invalid(format!("{} is not a file path", path.display()))),
    }
}

impl OnDemandIo {
    /// Wraps `inner`; evicted files come back through `downloader`.
    pub fn new(inner: Arc<dyn FileIo>, downloader: Arc<dyn LayerDownloader>) -> OnDemandIo {
        OnDemandIo {
            state: Arc::new(State {
                inner,
                downloader,
                gates: Mutex::default(),
                open: Mutex::default(),
                counters: DownloadCounters::default(),
            }),
        }
    }

    /// Downloads done so far.
    pub fn counters(&self) -> &DownloadCounters {
        &self.state.counters
    }

    /// Whether the layer file `path` is evicted (marker present, file absent).
    pub fn is_evicted(&self, path: &Path) -> bool {
        self.state.inner.open_read(path).is_err()
            && self.state.inner.read_file(&marker_path(path)).is_ok()
    }

    /// Last read of the layer file `path` through this wrapper, in
    /// microseconds since the epoch; 0 if not read since it was opened.
    pub fn last_access_micros(&self, path: &Path) -> u64 {
        let open = self.state.open.lock();
        open.get(path)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .map(|f| f.last_access.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Evicts the layer file `path`, whose copy `marker` describes: the
    /// marker is written durably before the file is removed. Refused if the
    /// file's size differs from the marker's. Returns the bytes freed (0 if
    /// it was not there).
    pub fn evict(&self, path: &Path, marker: &EvictedMarker) -> io::Result<u64> {
        let state = &self.state;
        let gate = state.gate(path);
        let _held = gate.lock();
        let size = match state.inner.open_read(path) {
            Ok(file) => file.len()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        if size != marker.file_size {
            return Err(invalid(format!(
                "will not evict {}: it has {size} bytes, its remote copy {}",
                path.display(),
                marker.file_size
            )));
        }
        let (dir, name) = split(path)?;
        write_atomic(
            state.inner.as_ref(),
            dir,
            &format!("{name}{EVICTED_SUFFIX}"),
            &marker.encode(),
        )?;
        state.inner.remove_file(path)?;
        state.inner.sync_dir(dir)?;
        let open: Vec<Arc<LazyFile>> = state
            .open
            .lock()
            .get(path)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect();
        for file in open {
            *file.file.lock() = None;
        }
        Ok(size)
    }

    fn track(&self, file: &Arc<LazyFile>) {
        let mut open = self.state.open.lock();
        let list = open.entry(file.path.clone()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(file));
    }
}

/// A layer file opened through [`OnDemandIo`]: the real file, or nothing
/// yet if it is evicted.
struct LazyFile {
    path: PathBuf,
    len: u64,
    state: Weak<State>,
    file: Mutex<Option<Arc<dyn ReadAt>>>,
    last_access: AtomicU64,
}

impl ReadAt for LazyFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.last_access.store(now_micros(), Ordering::Relaxed);
        let current = self.file.lock().clone();
        let file = match current {
            Some(file) => file,
            None => {
                let state = self.state.upgrade().ok_or_else(|| {
                    io::Error::other(format!("{}: file I/O was shut down", self.path.display()))
                })?;
                let file = state.fetch(&self.path)?;
                *self.file.lock() = Some(file.clone());
                file
            }
        };
        file.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn note_access(&self) {
        self.last_access.store(now_micros(), Ordering::Relaxed);
    }
}

impl FileIo for OnDemandIo {
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.state.inner.write_file(path, data)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.state.inner.read_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && is_layer_path(path) => {
                if self.state.inner.read_file(&marker_path(path)).is_err() {
                    return Err(e);
                }
                let file = self.state.fetch(path)?;
                let mut data = vec![0; usize::try_from(file.len()?).map_err(io::Error::other)?];
                file.read_exact_at(&mut data, 0)?;
                Ok(data)
            }
            other => other,
        }
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        if !is_layer_path(path) {
            return self.state.inner.open_read(path);
        }
        let (file, len) = match self.state.inner.open_read(path) {
            Ok(file) => {
                let len = file.len()?;
                (Some(file), len)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let marker_file = marker_path(path);
                let bytes = self.state.inner.read_file(&marker_file).map_err(|_| e)?;
                let marker = EvictedMarker::decode(&bytes)
                    .map_err(|e| invalid(format!("{}: {e}", marker_file.display())))?;
                (None, marker.file_size)
            }
            Err(e) => return Err(e),
        };
        let lazy = Arc::new(LazyFile {
            path: path.to_owned(),
            len,
            state: Arc::downgrade(&self.state),
            file: Mutex::new(file),
            last_access: AtomicU64::new(0),
        });
        self.track(&lazy);
        Ok(lazy)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.state.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.state.inner.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.inner.create_dir_all(dir)
    }

    /// Markers of evicted layers are listed as the layers themselves.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let entries = self.state.inner.list_dir(dir)?;
        let mut out: Vec<DirEntry> = Vec::with_capacity(entries.len());
        for entry in entries {
            let layer = entry
                .name
                .strip_suffix(EVICTED_SUFFIX)
                .filter(|n| !entry.is_dir && LayerDesc::parse_file_name(n).is_some());
            match layer {
                Some(name) => out.push(DirEntry {
                    name: name.to_owned(),
                    is_dir: false,
                }),
                None => out.push(entry),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if !is_layer_path(path) {
            return self.state.inner.remove_file(path);
        }
        let removed = self.state.inner.remove_file(path);
        let marker = self.state.inner.remove_file(&marker_path(path));
        match (removed, marker) {
            (Ok(()), _) | (Err(_), Ok(())) => Ok(()),
            (Err(e), Err(_)) => Err(e),
        }
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.inner.remove_dir_all(dir)
    }
}

#[cfg(test)]
mod tests;
