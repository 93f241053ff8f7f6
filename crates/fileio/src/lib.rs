//! Durable local file I/O for every Sediment component: the [`FileIo`]
//! trait and its backends (the real file system, [`FaultyIo`] injecting torn
//! writes and failed fsyncs, [`MemoryFileIo`] simulating a disk that loses
//! what was not fsynced), the one crash-safe replace protocol
//! ([`write_atomic`], [`replace_file`]), leftover cleanup, and fsync-failure
//! poisoning ([`PoisonedWriter`]). See `docs/file-io.md`.
//!
//! Why poisoning: on Linux a failed fsync may already have dropped the dirty
//! pages it was asked to write, and a retried fsync then reports success for
//! data that is gone. So a writer whose write or fsync failed never tries
//! again; it refuses every further write until its owner reopens it and
//! re-reads what is really on disk.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod faulty;
mod memory;
mod poison;

pub use faulty::{Fault, FaultyIo};
pub use memory::MemoryFileIo;
pub use poison::{AtomicFile, FileIoError, Poison};

/// Suffix of files and directories being written; anything with it is
/// garbage from an interrupted write and is deleted on open.
pub const TEMP_SUFFIX: &str = ".___temp";
/// Suffix of directories whose deletion has begun (renamed first so that a
/// crash mid-delete leaves a name the next start finishes deleting).
pub const DELETED_SUFFIX: &str = ".___deleted";

/// A file opened for positioned reads.
pub trait ReadAt: Send + Sync {
    /// Fills `buf` from `offset`, or fails (short files included).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// A read of this file was served without touching it (from the page
    /// cache): recency trackers count it as a use. No-op by default.
    fn note_access(&self) {}
}

/// A file opened for appending (an append-only log such as the WAL store's
/// files). Bytes written with [`AppendFile::append`] are durable only after
/// [`AppendFile::sync_data`] returned `Ok`; a failed `append` may have
/// written a prefix of its bytes (a torn write).
pub trait AppendFile: Send + Sync + fmt::Debug {
    /// Writes all of `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every appended byte and the file's length durable
    /// (`fdatasync`). Never retry a failure: see [`Poison`].
    fn sync_data(&mut self) -> io::Result<()>;
    /// Writes zeros from the append position up to `len` bytes and makes
    /// them durable, without moving the append position. Later appends then
    /// overwrite allocated, durable blocks, so their `sync_data` need not
    /// commit a change of the file's size or block map (a file-system
    /// journal commit per sync otherwise); PostgreSQL zero-fills its WAL
    /// segments for the same reason. Readers of the file see the zeros.
    fn preallocate(&mut self, len: u64) -> io::Result<()>;
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name (not a path).
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The file operations durable writers use.
pub trait FileIo: Send + Sync + fmt::Debug {
    /// Creates or truncates `path`, writes all of `data` and fsyncs the file.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Reads a whole file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for positioned reads.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs a directory so renames and creations in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Lists a directory.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `path`, which must not exist yet, for appending. Its name is
    /// durable only after [`FileIo::sync_dir`] of its directory. Backends
    /// that only serve whole-file writers may leave the append methods
    /// unsupported (the default).
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Err(appends_unsupported(path))
    }
    /// Opens an existing file for appending at its end (its current size).
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Err(appends_unsupported(path))
    }
    /// Cuts `path` to `len` bytes and fsyncs it (recovery dropping a torn
    /// tail).
    fn truncate(&self, path: &Path, _len: u64) -> io::Result<()> {
        Err(appends_unsupported(path))
    }
}

fn appends_unsupported(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}: this file backend does not support appends",
            path.display()
        ),
    )
}

/// [`FileIo`] on the local file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFileIo;

struct StdReadFile(fs::File);

impl ReadAt for StdReadFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// Appends with positioned writes at `end` (not `O_APPEND`), so that a
/// preallocated tail is overwritten rather than appended after.
#[derive(Debug)]
struct StdAppendFile {
    file: fs::File,
    end: u64,
}

/// Zeros written per call while preallocating.
const ZEROS_CHUNK_BYTES: usize = 256 * 1024;

impl AppendFile for StdAppendFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.end)?;
        self.end += data.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let size = self.file.metadata()?.len().max(self.end);
        if len <= size {
            return Ok(());
        }
        // Real zeros, not fallocate: a write into an unwritten extent still
        // changes the block map and costs a journal commit at fdatasync.
        let zeros = vec![0u8; ZEROS_CHUNK_BYTES];
        let mut at = size;
        while at < len {
            let n = usize::try_from(len - at)
                .unwrap_or(usize::MAX)
                .min(zeros.len());
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_all()
    }
}

impl FileIo for StdFileIo {
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut file = fs::File::create(path)?;
        file.write_all(data)?;
        file.sync_all()
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        Ok(Arc::new(StdReadFile(fs::File::open(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(StdAppendFile { file, end: 0 }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = fs::OpenOptions::new().write(true).open(path)?;
        let end = file.metadata()?.len();
        Ok(Box::new(StdAppendFile { file, end }))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }
}

/// The commit protocol for every file replaced whole: write to
/// `<name>.___temp`, fsync it, rename over `<name>`, fsync the directory.
/// A crash at any point leaves either the old file or the new one, plus
/// possibly a temp file that the next open deletes.
pub fn write_atomic(io: &dyn FileIo, dir: &Path, name: &str, data: &[u8]) -> io::Result<PathBuf> {
    let final_path = dir.join(name);
    let temp_path = dir.join(format!("{name}{TEMP_SUFFIX}"));
    io.write_file(&temp_path, data)?;
    io.rename(&temp_path, &final_path)?;
    io.sync_dir(dir)?;
    Ok(final_path)
}

/// [`write_atomic`] on the local file system for a full path: replaces
/// `path` with `data` so that a crash leaves the old or the new content.
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory or file name", path.display()),
        ));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    write_atomic(&StdFileIo, dir, &name.to_string_lossy(), data).map(|_| ())
}

/// Fsyncs a directory of the local file system so that creations, renames
/// and removals in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    StdFileIo.sync_dir(dir)
}

/// Whether `name` is a leftover of an interrupted [`write_atomic`].
pub fn is_temp(name: &str) -> bool {
    name.ends_with(TEMP_SUFFIX)
}

/// Deletes the leftovers of interrupted [`write_atomic`]s directly in `dir`
/// (files and directories named `*.___temp`), then fsyncs `dir` if anything
/// was removed. Returns how many were removed.
pub fn remove_temp_files(io: &dyn FileIo, dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in io.list_dir(dir)? {
        if !is_temp(&entry.name) {
            continue;
        }
        let path = dir.join(&entry.name);
        if entry.is_dir {
            io.remove_dir_all(&path)?;
        } else {
            io.remove_file(&path)?;
        }
        removed += 1;
    }
    if removed > 0 {
        io.sync_dir(dir)?;
    }
    Ok(removed)
}

/// Total size of the regular files under `dir` (0 if it cannot be read).
pub fn directory_size_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
