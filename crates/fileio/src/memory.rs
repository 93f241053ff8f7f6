//! [`MemoryFileIo`]: a simulated file system in memory that remembers what
//! is durable, so tests can "crash" it and reopen from exactly what an
//! fsync-honest disk would still hold.
//!
//! The durability model: `write_file` fsyncs the file's contents, but a
//! name (created, renamed or removed) only becomes durable when its
//! directory is fsynced with `sync_dir`. A directory that becomes durable
//! this way brings its current contents along (the store syncs a directory's
//! contents before publishing it by rename). `create_dir_all` is durable at
//! once. [`MemoryFileIo::crash`] throws away everything else.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{DirEntry, FileIo, ReadAt};

#[derive(Clone, Debug, Default)]
struct Tree {
    files: BTreeMap<PathBuf, Arc<Vec<u8>>>,
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

    /// Copies `dir`'s direct children and their subtrees from `from`.
    fn copy_children(&mut self, from: &Tree, dir: &Path) {
        for (path, data) in &from.files {
            if path.parent() == Some(dir)
                || from
                    .dirs
                    .iter()
                    .any(|d| d.parent() == Some(dir) && path.starts_with(d))
            {
                self.files.insert(path.clone(), data.clone());
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
}

/// An in-memory [`FileIo`] that can simulate a crash.
#[derive(Debug, Default)]
pub struct MemoryFileIo {
    state: Mutex<State>,
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
    }

    /// Replaces a file's contents in place (durably), e.g. to flip a byte.
    pub fn overwrite(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.current.files.contains_key(path) {
            return Err(not_found(path));
        }
        let data = Arc::new(data);
        state.current.files.insert(path.to_owned(), data.clone());
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
        state
            .current
            .files
            .insert(path.to_owned(), Arc::new(data.to_vec()));
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
        let current = &mut state.current;
        if let Some(data) = current.files.remove(from) {
            current.files.insert(to.to_owned(), data);
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
        let State { current, durable } = &mut *state;
        durable.clear_children(dir);
        durable.copy_children(current, dir);
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
        Ok(())
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
