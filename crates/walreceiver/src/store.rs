//! The durable local WAL of one timeline: the bytes the receiver got from the
//! endpoint, kept on local disk so that the flush position it reports to
//! PostgreSQL survives a crash of the pageserver (kill -9, power loss).
//!
//! # Layout
//!
//! A directory of files, each named by the LSN of its first byte as 16
//! upper-case hex digits plus `.wal` (`00000000016B3A28.wal`). The files hold
//! consecutive, gap-free ranges: a file ends where the next one starts. A file
//! is a sequence of *frames*, one per write (see `store/frame.rs`): a 24-byte header
//! (magic, payload length, LSN of the payload's first byte, CRC-32C over the
//! header fields and the payload) followed by the payload, the WAL bytes
//! themselves. Frames let recovery tell written bytes from whatever the file
//! system left after a crash (zeros, stale blocks, a short tail) without a
//! second fsync per sync for a separate "durable end" marker.
//!
//! # Write protocol
//!
//! [`WalStore::append`] only buffers. [`WalStore::sync`] writes the buffer as
//! frames at the end of the newest file, then `fdatasync`s it (and the
//! directory, if a file was created or removed since the last sync); only then
//! does it return the durable end. A file is rolled over (a new one created)
//! once it holds [`DEFAULT_FILE_SIZE_BYTES`]; the full file is `fdatasync`ed
//! and cut to its last frame *before* its successor is created, so every
//! file but the newest is complete and durable at all times. The newest file
//! is zero-filled (and fsynced) ahead of its appends, a step of
//! [`PREALLOCATE_STEP_BYTES`] at a time up to the roll-over size, much as
//! PostgreSQL zero-fills its WAL segments: a sync then overwrites
//! allocated blocks and its `fdatasync` commits no size change, which on
//! ext4 would cost a journal commit per sync — on every commit an endpoint
//! waits for. Recovery cuts the zeros like any other bad tail. Large appends are written out early
//! (without fsync) in frames of at most [`MAX_FRAME_PAYLOAD_BYTES`].
//!
//! After a failed write or fsync the store refuses all further work
//! ([`StoreError::Poisoned`]): the kernel may have dropped the dirty pages, so
//! retrying an fsync and carrying on would report data as safe that is not.
//! Reopen the directory to continue from what is really on disk.
//!
//! # Recovery (the tail truncation rule)
//!
//! [`WalStore::open`] walks the frame headers of every file, checking magic,
//! length and that each frame starts where the previous one ended; in the
//! *newest* file it also checks every payload's CRC. In the newest file the
//! first frame that fails a check, and everything after it, is cut off (the
//! file is truncated there and fsynced; a newest file left with no valid
//! frame is removed). This is sound because a sync makes every frame before
//! its end durable, so the cut point is never below a durable end that
//! `sync` returned; and bytes past it were never reported to anyone. In an
//! *older* file a bad header means damage to data that was reported durable:
//! `open` fails with [`StoreError::Corrupt`] instead of silently dropping
//! it. Older files' payload CRCs are checked whenever a read covers a whole
//! frame (as replay does), which keeps `open` fast on a large store.
//!
//! # What it assumes of the disk
//!
//! That `fdatasync` makes a file's written bytes and its length durable, and
//! an fsync of the directory the creation or removal of a file in it. No
//! write atomicity at all: a torn or reordered write of unsynced frames, or
//! a tail of zeros or stale blocks, fails a CRC and is cut by the rule above.
//! Synced frames are never rewritten (files are append-only), so a crash
//! can't damage them. The format has one version; a change gets a new frame
//! magic.
//!
//! Every file operation goes through [`fileio::FileIo`] (appends through its
//! [`fileio::AppendFile`] handles), so tests run the store on
//! [`fileio::FaultyIo`] (failed fsyncs, torn writes) and
//! [`fileio::MemoryFileIo`] (a crash loses whatever was not fsynced).
//!
//! [`WalStore::truncate_before`] removes whole files from the oldest one up,
//! so a crash in the middle leaves a contiguous suffix; the newest file is
//! never removed, so the store's end stays known. The writer detaches them
//! ([`WalStore::detach_before`]) and leaves the deleting to another thread.

mod frame;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fileio::{AppendFile, FileIo, ReadAt, StdFileIo};
use postgres_wal::Lsn;

use frame::{FrameHeader, FRAME_HEADER_BYTES};

/// Size at which the newest file is closed and a new one started.
pub const DEFAULT_FILE_SIZE_BYTES: u64 = 16 * 1024 * 1024;

/// How far ahead of its appends the newest file is zero-filled at a time.
pub const PREALLOCATE_STEP_BYTES: u64 = 1024 * 1024;
/// Largest payload of one frame; larger appends are split.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 1024 * 1024;
const FILE_SUFFIX: &str = ".wal";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system call failed.
    #[error("WAL store: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `append` at an LSN other than the store's end.
    #[error("WAL store: append at {got} is not contiguous with the end {expected}")]
    NotContiguous {
        /// The store's end.
        expected: Lsn,
        /// The LSN passed to `append`.
        got: Lsn,
    },
    /// `read` outside the stored range.
    #[error("WAL store: {from} is outside the stored range {start}..{end}")]
    OutOfRange {
        /// The requested position.
        from: Lsn,
        /// First stored byte (`Lsn::INVALID` when empty).
        start: Lsn,
        /// End of the stored bytes (`Lsn::INVALID` when empty).
        end: Lsn,
    },
    /// Data that must be intact (it was reported durable) is damaged.
    #[error("WAL store: {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fsync failed; the store must be reopened.
    #[error("WAL store is unusable after an earlier failure ({0}); reopen it")]
    Poisoned(String),
}

/// One frame's place: the WAL range it holds and where its payload is.
#[derive(Debug, Clone, Copy)]
struct FrameIndex {
    lsn: Lsn,
    payload_offset: u64,
    len: u32,
    /// The header's CRC, checked whenever a read covers the whole frame.
    crc: u32,
}

impl FrameIndex {
    fn end(&self) -> Lsn {
        self.lsn + u64::from(self.len)
    }
}

/// Frames per shared chunk of a [`FrameList`].
const FRAME_CHUNK: usize = 1024;

/// The frames of one file, oldest first, in chunks shared by reference so
/// that a [`ReadView`] costs O(chunks) to take and the writer copies at most
/// one chunk on its next append (copy on write), not the whole list.
#[derive(Debug, Clone, Default)]
struct FrameList {
    chunks: Vec<Arc<Vec<FrameIndex>>>,
}

impl FrameList {
    fn from_vec(frames: Vec<FrameIndex>) -> FrameList {
        FrameList {
            chunks: frames
                .chunks(FRAME_CHUNK)
                .map(|chunk| Arc::new(chunk.to_vec()))
                .collect(),
        }
    }

    fn push(&mut self, frame: FrameIndex) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < FRAME_CHUNK => Arc::make_mut(chunk).push(frame),
            _ => self.chunks.push(Arc::new(vec![frame])),
        }
    }

    fn last(&self) -> Option<&FrameIndex> {
        self.chunks.last().and_then(|chunk| chunk.last())
    }

    /// The first frame that ends after `at`.
    fn find(&self, at: Lsn) -> Option<&FrameIndex> {
        let chunk_index = self
            .chunks
            .partition_point(|chunk| chunk.last().is_none_or(|frame| frame.end() <= at));
        let chunk = self.chunks.get(chunk_index)?;
        chunk.get(chunk.partition_point(|frame| frame.end() <= at))
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &FrameIndex> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }
}

/// One file of the store and the frames found or written in it. Cloned
/// into [`ReadView`]s (cheaply: see [`FrameList`]).
#[derive(Debug, Clone)]
struct StoreFile {
    start: Lsn,
    path: PathBuf,
    frames: FrameList,
    size_bytes: u64,
}

impl StoreFile {
    fn end(&self) -> Lsn {
        self.frames.last().map_or(self.start, FrameIndex::end)
    }
}

/// Durable local WAL for one timeline: contiguous bytes from
/// [`WalStore::start_lsn`] to [`WalStore::end_lsn`]. See the module docs for
/// the on-disk format and the crash rules.
#[derive(Debug)]
pub struct WalStore {
    io: Arc<dyn FileIo>,
    dir: PathBuf,
    file_size_bytes: u64,
    /// Oldest first; contiguous.
    files: Vec<StoreFile>,
    /// Open handle of the newest file, for appending.
    active: Option<Box<dyn AppendFile>>,
    /// Appended bytes not yet written to a file, starting at `pending_lsn`.
    pending: Vec<u8>,
    pending_lsn: Lsn,
    /// End of the appended bytes, `None` while the store is empty.
    end: Option<Lsn>,
    /// End of what the last successful sync (or open) made durable.
    durable_end: Option<Lsn>,
    /// Written but not yet fdatasync'ed bytes exist in the newest file.
    active_dirty: bool,
    /// The newest file is zero-filled (durably) up to this many bytes.
    active_preallocated_to: u64,
    /// A file was created or removed since the directory was last fsynced.
    dir_dirty: bool,
    poisoned: Option<String>,
    /// Test hook: the next fdatasync of the newest file fails.
    #[cfg(test)]
    fail_next_sync: bool,
    /// Test hook, a slow disk: every fdatasync of the newest file first
    /// says so on the sender, then waits for a message on the receiver.
    #[cfg(test)]
    pub(crate) sync_gate: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
}

/// Files (at least one) [`WalStore::detach_before`] took out of a store:
/// no longer part of it, still on disk until [`DetachedFiles::remove`]
/// deletes them. Until then they stay valid files older than the store's,
/// so a crash or a failed removal only leaves the next open a few more old
/// files to start from.
#[must_use = "detached files stay on disk until removed"]
pub struct DetachedFiles {
    io: Arc<dyn FileIo>,
    dir: PathBuf,
    /// Oldest first.
    paths: Vec<PathBuf>,
}

impl DetachedFiles {
    /// Deletes the files, oldest first (a crash in between leaves a
    /// contiguous run of the newer ones in front of the store), then fsyncs
    /// the directory. Stops at the first failure.
    pub fn remove(self) -> Result<(), StoreError> {
        for path in &self.paths {
            self.io
                .remove_file(path)
                .map_err(|e| io_error("remove", path, e))?;
        }
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| io_error("fsync directory", &self.dir, e))
    }
}

impl WalStore {
    /// Opens (creating if needed) the store in `dir`, recovering after a
    /// crash by the tail truncation rule in the module docs.
    pub fn open(dir: &Path) -> Result<WalStore, StoreError> {
        Self::open_with_file_size(dir, DEFAULT_FILE_SIZE_BYTES)
    }

    /// Like [`WalStore::open`] with another roll-over size (tests use small
    /// files to exercise roll-over and truncation).
    pub fn open_with_file_size(dir: &Path, file_size_bytes: u64) -> Result<WalStore, StoreError> {
        Self::open_with_io(Arc::new(StdFileIo), dir, file_size_bytes)
    }

    /// Like [`WalStore::open_with_file_size`] on the file system `io` (a
    /// [`fileio::FaultyIo`] or [`fileio::MemoryFileIo`] in tests).
    pub fn open_with_io(
        io: Arc<dyn FileIo>,
        dir: &Path,
        file_size_bytes: u64,
    ) -> Result<WalStore, StoreError> {
        io.create_dir_all(dir)
            .map_err(|e| io_error("create directory", dir, e))?;
        let mut names = list_files(io.as_ref(), dir)?;
        names.sort_by_key(|(start, _)| *start);
        let mut files = Vec::with_capacity(names.len());
        let count = names.len();
        for (i, (start, path)) in names.into_iter().enumerate() {
            let newest = i + 1 == count;
            let expected_start = files.last().map(StoreFile::end);
            if let Some(expected) = expected_start {
                if expected != start {
                    return Err(StoreError::Corrupt {
                        path,
                        offset: 0,
                        reason: format!(
                            "file starts at {start}, the previous one ends at {expected}"
                        ),
                    });
                }
            }
            if let Some(file) = recover_file(io.as_ref(), start, path, newest)? {
                files.push(file);
            }
        }
        let end = files.last().map(StoreFile::end);
        let active = match files.last() {
            Some(file) => Some(
                io.open_append(&file.path)
                    .map_err(|e| io_error("open", &file.path, e))?,
            ),
            None => None,
        };
        Ok(WalStore {
            io,
            dir: dir.to_owned(),
            file_size_bytes: file_size_bytes.max(1),
            files,
            active,
            pending: Vec::new(),
            pending_lsn: end.unwrap_or_default(),
            end,
            durable_end: end,
            active_dirty: false,
            active_preallocated_to: 0,
            dir_dirty: false,
            poisoned: None,
            #[cfg(test)]
            fail_next_sync: false,
            #[cfg(test)]
            sync_gate: None,
        })
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// First stored byte; `None` when the store is empty.
    pub fn start_lsn(&self) -> Option<Lsn> {
        match self.files.first() {
            Some(file) => Some(file.start),
            None => self.end.map(|_| self.pending_lsn),
        }
    }

    /// End of the stored bytes (appended, durable or not); `None` when empty.
    pub fn end_lsn(&self) -> Option<Lsn> {
        self.end
    }

    /// End of the bytes the last `sync` (or `open`) made durable.
    pub fn durable_end_lsn(&self) -> Option<Lsn> {
        self.durable_end
    }

    /// Bytes appended since the last `sync` (or `open`).
    pub fn unsynced_bytes(&self) -> u64 {
        match (self.end, self.durable_end.or(self.start_lsn())) {
            (Some(end), Some(durable)) => end - durable,
            _ => 0,
        }
    }

    /// Appends `bytes` at `lsn`: anywhere in an empty store, else exactly at
    /// [`WalStore::end_lsn`]. Not durable until [`WalStore::sync`].
    pub fn append(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<(), StoreError> {
        self.check_usable()?;
        match self.end {
            Some(end) if end != lsn => {
                return Err(StoreError::NotContiguous {
                    expected: end,
                    got: lsn,
                })
            }
            Some(_) => {}
            None => self.pending_lsn = lsn,
        }
        self.pending.extend_from_slice(bytes);
        self.end = Some(lsn + bytes.len() as u64);
        if self.pending.len() >= MAX_FRAME_PAYLOAD_BYTES {
            self.guard(Self::write_pending)?;
        }
        Ok(())
    }

    /// Writes what was appended and fsyncs it; returns the durable end
    /// (`Lsn::INVALID` for an empty store).
    pub fn sync(&mut self) -> Result<Lsn, StoreError> {
        self.check_usable()?;
        self.guard(Self::write_pending)?;
        if self.active_dirty {
            self.guard(Self::sync_active)?;
        }
        if self.dir_dirty {
            self.guard(Self::sync_dir)?;
        }
        self.durable_end = self.end;
        Ok(self.durable_end.unwrap_or(Lsn::INVALID))
    }

    /// Up to `max` bytes starting at `from` (which must lie in
    /// `start_lsn()..=end_lsn()`); fewer only when the store ends sooner.
    pub fn read(&self, from: Lsn, max: usize) -> Result<Vec<u8>, StoreError> {
        let (Some(start), Some(end)) = (self.start_lsn(), self.end) else {
            return Err(self.out_of_range(from));
        };
        if from < start || from > end {
            return Err(self.out_of_range(from));
        }
        read_range(
            self.io.as_ref(),
            &self.files,
            Some((self.pending_lsn, &self.pending)),
            from,
            end,
            max,
        )
        .map_err(|e| e.map_or_else(|error| error, |at| self.out_of_range(at)))
    }

    /// What a reader on another thread may read: the files as they are now
    /// (call after [`WalStore::sync`], so they hold everything durable).
    /// Reading it takes no lock of the store's owner, so a reader never
    /// waits for the owner's appends, fsyncs or deletions.
    pub fn read_view(&self) -> ReadView {
        ReadView {
            io: self.io.clone(),
            files: self.files.clone(),
        }
    }

    /// Removes every file that lies wholly below `lsn` ([`Self::detach_before`],
    /// then [`DetachedFiles::remove`] on the caller's thread). The newest
    /// file is always kept, so the store's end stays known.
    pub fn truncate_before(&mut self, lsn: Lsn) -> Result<(), StoreError> {
        match self.detach_before(lsn)? {
            Some(detached) => self.guard(|_| detached.remove()),
            None => Ok(()),
        }
    }

    /// Takes every file that lies wholly below `lsn` out of the store
    /// without touching the disk, for [`DetachedFiles::remove`] to delete
    /// elsewhere: deleting a 16 MiB file took ~3 ms on a loaded ext4 disk,
    /// a stall for every commit waiting on the writer's next sync. The
    /// newest file is always kept, so the store's end stays known. `None`
    /// (and no allocation: the writer asks after every sync) when no file
    /// lies wholly below `lsn`.
    pub fn detach_before(&mut self, lsn: Lsn) -> Result<Option<DetachedFiles>, StoreError> {
        self.check_usable()?;
        let whole = self
            .files
            .iter()
            .skip(1)
            .take_while(|next| next.start <= lsn)
            .count();
        if whole == 0 {
            return Ok(None);
        }
        let paths = self.files.drain(..whole).map(|file| file.path).collect();
        Ok(Some(DetachedFiles {
            io: self.io.clone(),
            dir: self.dir.clone(),
            paths,
        }))
    }

    /// Deletes every file: the store becomes empty, and the next append may
    /// be at any LSN. For a consumer that needs WAL this store cannot give
    /// contiguously (it starts below our start or above our end).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.check_usable()?;
        self.active = None;
        for file in std::mem::take(&mut self.files) {
            self.guard(|store| {
                store
                    .io
                    .remove_file(&file.path)
                    .map_err(|e| io_error("remove", &file.path, e))
            })?;
        }
        self.pending.clear();
        self.end = None;
        self.durable_end = None;
        self.active_dirty = false;
        self.guard(Self::sync_dir)
    }

    fn check_usable(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(reason) => Err(StoreError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Runs a file-system step; a failure poisons the store (see module docs).
    fn guard<T>(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = step(self);
        if let Err(error) = &result {
            self.poisoned = Some(error.to_string());
        }
        result
    }

    fn out_of_range(&self, from: Lsn) -> StoreError {
        StoreError::OutOfRange {
            from,
            start: self.start_lsn().unwrap_or_default(),
            end: self.end.unwrap_or_default(),
        }
    }

    /// Writes the pending buffer as frames, rolling over to new files.
    fn write_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut lsn = self.pending_lsn;
        for chunk in pending.chunks(MAX_FRAME_PAYLOAD_BYTES) {
            let needs_new_file = self
                .files
                .last()
                .is_none_or(|file| file.size_bytes >= self.file_size_bytes);
            if needs_new_file {
                self.roll_over(lsn)?;
            }
            // (A file reopened after a restart starts with nothing
            // preallocated: recovery cut its zero tail.)
            let frame_end = self.files.last().map_or(0, |file| file.size_bytes)
                + (FRAME_HEADER_BYTES + chunk.len()) as u64;
            if frame_end > self.active_preallocated_to {
                self.preallocate_active(frame_end)?;
            }
            self.write_frame(lsn, chunk)?;
            lsn = lsn + chunk.len() as u64;
        }
        self.pending_lsn = lsn;
        Ok(())
    }

    /// `fdatasync` of the newest file.
    fn sync_active(&mut self) -> Result<(), StoreError> {
        #[cfg(test)]
        if let Some((entered, release)) = &self.sync_gate {
            let _ = entered.send(());
            let _ = release.recv();
        }
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io_error(
                "fdatasync",
                &self.dir,
                std::io::Error::other("injected fsync failure"),
            ));
        }
        if let (Some(active), Some(file)) = (&mut self.active, self.files.last()) {
            active
                .sync_data()
                .map_err(|e| io_error("fdatasync", &file.path, e))?;
        }
        self.active_dirty = false;
        Ok(())
    }

    /// Makes the newest file durable and cuts its preallocated tail (every
    /// file but the newest ends with its last frame), then starts a new,
    /// zero-filled one at `lsn`.
    fn roll_over(&mut self, lsn: Lsn) -> Result<(), StoreError> {
        if self.active_dirty {
            self.sync_active()?;
        }
        if let Some(file) = self.files.last() {
            self.active = None;
            self.io
                .truncate(&file.path, file.size_bytes)
                .map_err(|e| io_error("truncate", &file.path, e))?;
        }
        let path = self.dir.join(file_name(lsn));
        let handle = self
            .io
            .create_append(&path)
            .map_err(|e| io_error("create", &path, e))?;
        self.files.push(StoreFile {
            start: lsn,
            path,
            frames: FrameList::default(),
            size_bytes: 0,
        });
        self.active = Some(handle);
        self.active_preallocated_to = 0;
        self.dir_dirty = true;
        Ok(())
    }

    /// Zero-fills the newest file ahead of its appends (see
    /// [`fileio::AppendFile::preallocate`]) so that it covers `needed`
    /// bytes: every later fdatasync then writes data blocks only, no size
    /// change. It grows by [`PREALLOCATE_STEP_BYTES`] at a time up to the
    /// roll-over size, not by a whole file at once: a 16 MiB zero-fill and
    /// its fsync at each roll-over stalled the commits waiting on the
    /// writer by tens of milliseconds.
    fn preallocate_active(&mut self, needed: u64) -> Result<(), StoreError> {
        let target = needed.max((needed + PREALLOCATE_STEP_BYTES).min(self.file_size_bytes));
        if let (Some(active), Some(file)) = (&mut self.active, self.files.last()) {
            active
                .preallocate(target)
                .map_err(|e| io_error("preallocate", &file.path, e))?;
        }
        self.active_preallocated_to = target;
        Ok(())
    }

    fn write_frame(&mut self, lsn: Lsn, payload: &[u8]) -> Result<(), StoreError> {
        let (Some(active), Some(file)) = (&mut self.active, self.files.last_mut()) else {
            return Err(StoreError::Poisoned("no file to write to".to_owned()));
        };
        let header = FrameHeader::for_payload(lsn, payload);
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
        frame.extend_from_slice(&header.encode());
        frame.extend_from_slice(payload);
        active
            .append(&frame)
            .map_err(|e| io_error("write", &file.path, e))?;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        file.frames.push(FrameIndex {
            lsn,
            payload_offset: file.size_bytes + FRAME_HEADER_BYTES as u64,
            len,
            crc: header.crc,
        });
        file.size_bytes += frame.len() as u64;
        self.active_dirty = true;
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), StoreError> {
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| io_error("fsync directory", &self.dir, e))?;
        self.dir_dirty = false;
        Ok(())
    }
}

/// Appends to `out` some bytes (at most `max`) starting at `at`, from one
/// file frame or from the pending buffer (if given). `handle` caches the open file.
fn read_some(
    io: &dyn FileIo,
    files: &[StoreFile],
    pending: Option<(Lsn, &[u8])>,
    at: Lsn,
    max: usize,
    handle: &mut Option<(usize, Arc<dyn ReadAt>)>,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let in_files = files.last().is_some_and(|file| at < file.end());
    if !in_files {
        let Some((pending_lsn, pending)) = pending else {
            return Ok(());
        };
        let skip = at
            .checked_sub(pending_lsn)
            .and_then(|skip| usize::try_from(skip).ok())
            .unwrap_or(usize::MAX);
        let available = pending.get(skip..).unwrap_or_default();
        out.extend_from_slice(&available[..available.len().min(max)]);
        return Ok(());
    }
    let file_index = files.partition_point(|file| file.end() <= at);
    let Some(file) = files.get(file_index) else {
        return Ok(());
    };
    let Some(frame) = file.frames.find(at) else {
        return Ok(());
    };
    let skip = at - frame.lsn;
    let take = (u64::from(frame.len) - skip).min(max as u64);
    let mut buffer = vec![0u8; usize::try_from(take).unwrap_or(0)];
    if handle.as_ref().map(|(index, _)| *index) != Some(file_index) {
        let opened = io
            .open_read(&file.path)
            .map_err(|e| io_error("open", &file.path, e))?;
        *handle = Some((file_index, opened));
    }
    if let Some((_, opened)) = handle {
        opened
            .read_exact_at(&mut buffer, frame.payload_offset + skip)
            .map_err(|e| io_error("read", &file.path, e))?;
    }
    if skip == 0 && take == u64::from(frame.len) && !frame::payload_matches(frame, &buffer) {
        return Err(StoreError::Corrupt {
            path: file.path.clone(),
            offset: frame.payload_offset,
            reason: format!("CRC mismatch in the frame at {}", frame.lsn),
        });
    }
    out.extend_from_slice(&buffer);
    Ok(())
}

/// Up to `max` bytes from `from` (below `end`) out of `files` and then the
/// pending buffer. Errors: `Err(Ok(at))` when nothing could be read at `at`
/// (out of range), `Err(Err(_))` for an I/O or CRC failure.
fn read_range(
    io: &dyn FileIo,
    files: &[StoreFile],
    pending: Option<(Lsn, &[u8])>,
    from: Lsn,
    end: Lsn,
    max: usize,
) -> Result<Vec<u8>, Result<Lsn, StoreError>> {
    let wanted = usize::try_from(end - from).unwrap_or(usize::MAX).min(max);
    let mut out = Vec::with_capacity(wanted);
    let mut handle: Option<(usize, Arc<dyn ReadAt>)> = None;
    while out.len() < wanted {
        let at = from + out.len() as u64;
        let before = out.len();
        read_some(
            io,
            files,
            pending,
            at,
            wanted - out.len(),
            &mut handle,
            &mut out,
        )
        .map_err(Err)?;
        if out.len() == before {
            // Only possible if the index is inconsistent; never spin.
            return Err(Ok(at));
        }
    }
    Ok(out)
}

/// A snapshot of a [`WalStore`]'s files for readers on other threads (see
/// [`WalStore::read_view`]). Files the owner deletes later stay readable
/// through handles already open; the owner only deletes files wholly below
/// what the reader has consumed.
#[derive(Debug, Clone)]
pub struct ReadView {
    io: Arc<dyn FileIo>,
    files: Vec<StoreFile>,
}

impl Default for ReadView {
    /// An empty view.
    fn default() -> ReadView {
        ReadView {
            io: Arc::new(StdFileIo),
            files: Vec::new(),
        }
    }
}

impl ReadView {
    /// First byte in the view's files; `None` when empty.
    pub fn start_lsn(&self) -> Option<Lsn> {
        self.files.first().map(|file| file.start)
    }

    /// End of the bytes in the view's files; `None` when empty.
    pub fn end_lsn(&self) -> Option<Lsn> {
        self.files.last().map(StoreFile::end)
    }

    /// Up to `max` bytes starting at `from`, like [`WalStore::read`].
    pub fn read(&self, from: Lsn, max: usize) -> Result<Vec<u8>, StoreError> {
        let out_of_range = |from| StoreError::OutOfRange {
            from,
            start: self.files.first().map(|f| f.start).unwrap_or_default(),
            end: self.end_lsn().unwrap_or_default(),
        };
        let (Some(start), Some(end)) = (self.files.first().map(|f| f.start), self.end_lsn()) else {
            return Err(out_of_range(from));
        };
        if from < start || from > end {
            return Err(out_of_range(from));
        }
        read_range(self.io.as_ref(), &self.files, None, from, end, max)
            .map_err(|e| e.map_or_else(|error| error, out_of_range))
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn file_name(start: Lsn) -> String {
    format!("{:016X}{FILE_SUFFIX}", start.0)
}

fn parse_file_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_suffix(FILE_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(Lsn)
}

/// Store files in `dir` (other names are ignored), unsorted.
fn list_files(io: &dyn FileIo, dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, StoreError> {
    let entries = io.list_dir(dir).map_err(|e| io_error("list", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir {
            continue;
        }
        if let Some(start) = parse_file_name(&entry.name) {
            files.push((start, dir.join(&entry.name)));
        }
    }
    Ok(files)
}

/// Reads and checks every frame of one file. The newest file is cut at its
/// first bad frame (removed if none is good: `Ok(None)`); an older file with
/// a bad frame is corrupt.
fn recover_file(
    io: &dyn FileIo,
    start: Lsn,
    path: PathBuf,
    newest: bool,
) -> Result<Option<StoreFile>, StoreError> {
    let handle = io
        .open_read(&path)
        .map_err(|e| io_error("open", &path, e))?;
    let size_bytes = handle.len().map_err(|e| io_error("stat", &path, e))?;
    // Older files were complete and synced before their successor existed:
    // walking their headers is enough here, payload CRCs are checked when
    // frames are read. The newest file may hold a torn tail: check it all.
    let (frames, valid_bytes, problem) =
        frame::scan(handle.as_ref(), &path, start, size_bytes, newest)?;
    if let Some(reason) = problem {
        if !newest {
            return Err(StoreError::Corrupt {
                path,
                offset: valid_bytes,
                reason,
            });
        }
        if zero_tail(handle.as_ref(), valid_bytes, size_bytes) {
            tracing::debug!(
                path = %path.display(),
                valid_bytes,
                size_bytes,
                "WAL store: cutting the zero-filled tail of the newest file"
            );
        } else {
            tracing::warn!(
                path = %path.display(),
                valid_bytes,
                size_bytes,
                %reason,
                "WAL store: cutting the torn tail of the newest file"
            );
        }
        drop(handle);
        if frames.is_empty() {
            io.remove_file(&path)
                .map_err(|e| io_error("remove", &path, e))?;
            sync_parent(io, &path)?;
            return Ok(None);
        }
        io.truncate(&path, valid_bytes)
            .map_err(|e| io_error("truncate", &path, e))?;
    }
    Ok(Some(StoreFile {
        start,
        path,
        frames: FrameList::from_vec(frames),
        size_bytes: valid_bytes,
    }))
}

/// Whether the newest file continues with zeros (its preallocation) where
/// its frames end, rather than with a torn frame.
fn zero_tail(file: &dyn ReadAt, from: u64, size_bytes: u64) -> bool {
    let len = size_bytes
        .saturating_sub(from)
        .min(FRAME_HEADER_BYTES as u64);
    let mut head = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut head, from).is_ok() && head.iter().all(|&b| b == 0)
}

fn sync_parent(io: &dyn FileIo, path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir)
        .map_err(|e| io_error("fsync directory", dir, e))
}
