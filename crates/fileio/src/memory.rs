//! [`MemoryFileIo`]: a simulated file system in memory that remembers what
//! is durable, so tests can "crash" it and reopen from exactly what an
//! fsync-honest disk would still hold.
//!
//! The durability model: `write_file` fsyncs the file's contents, but a
//! name (created, renamed or removed) only becomes durable when its
//! directory is fsynced with `sync_dir`. A directory that becomes durable
//! this way brings its current contents along (the store syncs a directory's
//! contents before publishing it by rename). `create_dir_all` is durable at
//! once. Appended bytes ([`FileIo::create_append`]) are durable once
//! [`AppendFile::sync_data`] returned, if the file's name is; a name made
//! durable by `sync_dir` brings the file's last synced contents, not
//! bytes appended after that. [`MemoryFileIo::crash`] throws away
//! everything else.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{AppendFile, DirEntry, FileIo, ReadAt};

type Files = BTreeMap<PathBuf, Arc<Vec<u8>>>;

#[derive(Clone, Debug, Default)]
struct Tree {
    files: Files,
    dirs: BTreeSet<PathBuf>,
}

impl Tree {
    fn has_dir(&self, dir: &Path) -> bool {
        self.dirs.contains(dir)
    }

    /// Removes `dir`'s direct children (files and subtrees).
    fn clear_children(&mut self, dir: &Path) {
        self.files.retain(|p, _| p.parent() != Some(dir));
        let subdirs: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.parent() == Some(dir))
            .cloned()
            .collect();
        for sub in subdirs {
            self.remove_tree(&sub);
        }
    }

    fn remove_tree(&mut self, dir: &Path) {
        self.files.retain(|p, _| !p.starts_with(dir));
        self.dirs.retain(|d| !d.starts_with(dir));
    }

    /// Copies `dir`'s direct children and their subtrees from `from`, each
    /// file with its contents as of its last fsync (`synced`).
    fn copy_children(&mut self, from: &Tree, synced: &Files, dir: &Path) {
        for path in from.files.keys() {
            if path.parent() == Some(dir)
                || from
                    .dirs
                    .iter()
                    .any(|d| d.parent() == Some(dir) && path.starts_with(d))
            {
                let durable = synced.get(path).cloned().unwrap_or_default();
                self.files.insert(path.clone(), durable);
            }
        }
        for sub in from.dirs.iter().filter(|d| d.parent() == Some(dir)) {
            for d in from.dirs.iter().filter(|d| d.starts_with(sub)) {
                self.dirs.insert(d.clone());
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    current: Tree,
    durable: Tree,
    /// Each current file's contents as of its last fsync (`write_file`,
    /// `sync_data`, `truncate`), under its current name.
    synced: Files,
}

impl State {
    /// Records `path`'s current contents as fsynced (and durable, if its
    /// name already is).
    fn mark_synced(&mut self, path: &Path) -> io::Result<()> {
        let data = self
            .current
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        if self.durable.files.contains_key(path) {
            self.durable.files.insert(path.to_owned(), data.clone());
        }
        self.synced.insert(path.to_owned(), data);
        Ok(())
    }
}

/// An in-memory [`FileIo`] that can simulate a crash.
#[derive(Debug, Default)]
pub struct MemoryFileIo {
    state: Arc<Mutex<State>>,
}

/// An append handle of a [`MemoryFileIo`] file (by name), writing at `end`.
#[derive(Debug)]
struct MemoryAppend {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    end: usize,
}

impl AppendFile for MemoryAppend {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state
            .current
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        let file = Arc::make_mut(file);
        let end = self.end + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[self.end..end].copy_from_slice(data);
        self.end = end;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.state.lock().mark_synced(&self.path)
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let mut state = self.state.lock();
        let file = state
            .current
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        if file.len() < len {
            Arc::make_mut(file).resize(len, 0);
        }
        state.mark_synced(&self.path)
    }
}

struct MemoryFile(Arc<Vec<u8>>);

impl ReadAt for MemoryFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.0.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemoryFileIo {
    /// An empty file system.
    pub fn new() -> MemoryFileIo {
        MemoryFileIo::default()
    }

    /// Loses everything that was not durable, as a power failure would.
    pub fn crash(&self) {
        let mut state = self.state.lock();
        state.current = state.durable.clone();
        state.synced = state.durable.files.clone();
    }

    /// Replaces a file's contents in place (durably), e.g. to flip a byte.
    pub fn overwrite(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.current.files.contains_key(path) {
            return Err(not_found(path));
        }
        let data = Arc::new(data);
        state.current.files.insert(path.to_owned(), data.clone());
        state.synced.insert(path.to_owned(), data.clone());
        if state.durable.files.contains_key(path) {
            state.durable.files.insert(path.to_owned(), data);
        }
        Ok(())
    }
}

impl FileIo for MemoryFileIo {
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let parent = path.parent().ok_or_else(|| not_found(path))?;
        if !state.current.has_dir(parent) {
            return Err(not_found(parent));
        }
        let data = Arc::new(data.to_vec());
        state.current.files.insert(path.to_owned(), data.clone());
        state.synced.insert(path.to_owned(), data);
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        let data = state
            .current
            .files
            .get(path)
            .ok_or_else(|| not_found(path))?;
        Ok(data.as_ref().clone())
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        let state = self.state.lock();
        let data = state
            .current
            .files
            .get(path)
            .ok_or_else(|| not_found(path))?;
        Ok(Arc::new(MemoryFile(data.clone())))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let State {
            current, synced, ..
        } = &mut *state;
        if let Some(data) = current.files.remove(from) {
            current.files.insert(to.to_owned(), data);
            match synced.remove(from) {
                Some(data) => synced.insert(to.to_owned(), data),
                None => synced.remove(to),
            };
            return Ok(());
        }
        if !current.has_dir(from) {
            return Err(not_found(from));
        }
        current.remove_tree(to);
        let moved_files: Vec<_> = current
            .files
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect();
        let moved_dirs: Vec<_> = current
            .dirs
            .iter()
            .filter(|d| d.starts_with(from))
            .cloned()
            .collect();
        current.remove_tree(from);
        let rebase = |p: &Path| p.strip_prefix(from).map(|rest| to.join(rest));
        synced.retain(|p, _| !p.starts_with(to));
        let moved_synced: Vec<_> = synced
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect();
        synced.retain(|p, _| !p.starts_with(from));
        for (path, data) in moved_synced {
            if let Ok(new) = rebase(&path) {
                synced.insert(new, data);
            }
        }
        for (path, data) in moved_files {
            if let Ok(new) = rebase(&path) {
                current.files.insert(new, data);
            }
        }
        for dir in moved_dirs {
            if let Ok(new) = rebase(&dir) {
                current.dirs.insert(new);
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.current.has_dir(dir) {
            return Err(not_found(dir));
        }
        let State {
            current,
            durable,
            synced,
        } = &mut *state;
        durable.clear_children(dir);
        durable.copy_children(current, synced, dir);
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for ancestor in dir.ancestors() {
            state.current.dirs.insert(ancestor.to_owned());
            state.durable.dirs.insert(ancestor.to_owned());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.state.lock();
        if !state.current.has_dir(dir) {
            return Err(not_found(dir));
        }
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut out: Vec<DirEntry> = state
            .current
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| {
                name(p).map(|name| DirEntry {
                    name,
                    is_dir: false,
                })
            })
            .chain(
                state
                    .current
                    .dirs
                    .iter()
                    .filter(|d| d.parent() == Some(dir))
                    .filter_map(|d| name(d).map(|name| DirEntry { name, is_dir: true })),
            )
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.synced.remove(path);
        state
            .current
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.current.has_dir(dir) {
            return Err(not_found(dir));
        }
        state.current.remove_tree(dir);
        state.synced.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut state = self.state.lock();
        let parent = path.parent().ok_or_else(|| not_found(path))?;
        if !state.current.has_dir(parent) {
            return Err(not_found(parent));
        }
        if state.current.files.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        state.current.files.insert(path.to_owned(), Arc::default());
        state.synced.insert(path.to_owned(), Arc::default());
        Ok(Box::new(MemoryAppend {
            state: self.state.clone(),
            path: path.to_owned(),
            end: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let end = match self.state.lock().current.files.get(path) {
            Some(data) => data.len(),
            None => return Err(not_found(path)),
        };
        Ok(Box::new(MemoryAppend {
            state: self.state.clone(),
            path: path.to_owned(),
            end,
        }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state
            .current
            .files
            .get_mut(path)
            .ok_or_else(|| not_found(path))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Arc::make_mut(file).truncate(len);
        state.mark_synced(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_atomic;

    #[test]
    fn only_synced_names_survive_a_crash() {
        let io = MemoryFileIo::new();
        let dir = Path::new("/r");
        io.create_dir_all(dir).unwrap();
        write_atomic(&io, dir, "a", b"1").unwrap();
        io.write_file(&dir.join("b"), b"2").unwrap();
        io.crash();
        assert_eq!(io.read_file(&dir.join("a")).unwrap(), b"1");
        assert!(io.read_file(&dir.join("b")).is_err());
        assert!(io.read_file(&dir.join("a.___temp")).is_err());
    }

    #[test]
    fn appends_survive_a_crash_only_once_synced() {
        let io = MemoryFileIo::new();
        let dir = Path::new("/w");
        io.create_dir_all(dir).unwrap();
        let path = dir.join("log");
        let mut file = io.create_append(&path).unwrap();
        file.append(b"one").unwrap();
        file.sync_data().unwrap();
        file.append(b"two").unwrap();
        // The name becomes durable with the synced contents only.
        io.sync_dir(dir).unwrap();
        assert_eq!(io.read_file(&path).unwrap(), b"onetwo");
        io.crash();
        assert_eq!(io.read_file(&path).unwrap(), b"one");
        let mut file = io.open_append(&path).unwrap();
        file.append(b"three").unwrap();
        file.sync_data().unwrap();
        file.append(b"four").unwrap();
        io.crash();
        assert_eq!(io.read_file(&path).unwrap(), b"onethree");
        io.truncate(&path, 2).unwrap();
        io.crash();
        assert_eq!(io.read_file(&path).unwrap(), b"on");
        // Preallocated zeros are durable at once and overwritten in place.
        let mut file = io.open_append(&path).unwrap();
        file.preallocate(6).unwrap();
        file.append(b"e").unwrap();
        assert_eq!(io.read_file(&path).unwrap(), b"one\0\0\0");
        io.crash();
        assert_eq!(io.read_file(&path).unwrap(), b"on\0\0\0\0");
        // A file whose name was never made durable is gone.
        io.create_append(&dir.join("new"))
            .unwrap()
            .sync_data()
            .unwrap();
        io.crash();
        assert!(io.read_file(&dir.join("new")).is_err());
    }

    #[test]
    fn renamed_directories_keep_their_contents() {
        let io = MemoryFileIo::new();
        io.create_dir_all(Path::new("/r/t.tmp")).unwrap();
        write_atomic(&io, Path::new("/r/t.tmp"), "m", b"x").unwrap();
        io.rename(Path::new("/r/t.tmp"), Path::new("/r/t")).unwrap();
        io.sync_dir(Path::new("/r")).unwrap();
        io.crash();
        assert_eq!(io.read_file(Path::new("/r/t/m")).unwrap(), b"x");
        assert!(io.list_dir(Path::new("/r/t.tmp")).is_err());
        let names: Vec<_> = io
            .list_dir(Path::new("/r"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["t"]);
    }
}
