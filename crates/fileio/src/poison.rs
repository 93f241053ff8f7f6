//! Fsync-failure poisoning: [`Poison`] remembers the first failed write or
//! fsync of a writer and refuses everything after it; [`AtomicFile`] is a
//! file replaced whole through [`write_atomic`] that is poisoned that way.
//!
//! Never retry a failed fsync: Linux may have dropped the dirty pages when
//! it reported the error, and the retry then succeeds for data that is not
//! on disk. The only safe continuation is to reopen and re-read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{write_atomic, FileIo};

/// A failed durable write.
#[derive(Debug, thiserror::Error)]
pub enum FileIoError {
    /// The operation itself failed; the writer is poisoned from now on.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync of this writer failed; it must be reopened.
    #[error("{} refuses writes after an earlier failure ({reason}); reopen it", path.display())]
    Poisoned { path: PathBuf, reason: String },
}

/// The poisoned-or-not state of one writer.
#[derive(Debug, Default)]
pub struct Poison {
    reason: Mutex<Option<String>>,
}

impl Poison {
    /// A healthy writer's state.
    pub fn new() -> Poison {
        Poison::default()
    }

    /// Fails with [`FileIoError::Poisoned`] once poisoned.
    pub fn check(&self, path: &Path) -> Result<(), FileIoError> {
        match self.reason.lock().as_ref() {
            Some(reason) => Err(FileIoError::Poisoned {
                path: path.to_owned(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs one write-side step unless poisoned; its failure poisons. The
    /// lock is not held while `step` runs (it may be a slow fsync).
    pub fn guard<T>(
        &self,
        op: &'static str,
        path: &Path,
        step: impl FnOnce() -> io::Result<T>,
    ) -> Result<T, FileIoError> {
        self.check(path)?;
        step().map_err(|source| {
            let error = FileIoError::Io {
                op,
                path: path.to_owned(),
                source,
            };
            self.reason.lock().get_or_insert_with(|| error.to_string());
            error
        })
    }

    /// Whether a failure has happened.
    pub fn is_poisoned(&self) -> bool {
        self.reason.lock().is_some()
    }
}

/// One file replaced whole by [`write_atomic`]; after a failed replace it
/// refuses further replaces until a new `AtomicFile` is made for it (after
/// the owner re-read what the file really holds).
#[derive(Debug)]
pub struct AtomicFile {
    io: Arc<dyn FileIo>,
    dir: PathBuf,
    name: String,
    poison: Poison,
}

impl AtomicFile {
    /// The file `dir/name` written through `io`.
    pub fn new(io: Arc<dyn FileIo>, dir: &Path, name: &str) -> AtomicFile {
        AtomicFile {
            io,
            dir: dir.to_owned(),
            name: name.to_owned(),
            poison: Poison::new(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Replaces the content crash-safely (old or new after a crash).
    pub fn replace(&self, data: &[u8]) -> Result<(), FileIoError> {
        let path = self.path();
        self.poison.guard("replace", &path, || {
            write_atomic(self.io.as_ref(), &self.dir, &self.name, data).map(|_| ())
        })
    }

    /// Reads the current content.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        self.io.read_file(&self.path())
    }

    /// Whether an earlier replace failed.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_poisoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fault, FaultyIo, MemoryFileIo};
    use proptest::prelude::*;

    fn setup() -> (Arc<MemoryFileIo>, Arc<FaultyIo>, AtomicFile) {
        let disk = Arc::new(MemoryFileIo::new());
        disk.create_dir_all(Path::new("/d")).unwrap();
        let faulty = Arc::new(FaultyIo::new(disk.clone()));
        let file = AtomicFile::new(faulty.clone(), Path::new("/d"), "f");
        (disk, faulty, file)
    }

    #[test]
    fn failed_fsync_poisons_until_reopened() {
        let (_disk, faulty, file) = setup();
        file.replace(b"one").unwrap();
        faulty.arm(0, Fault::FailFsync);
        assert!(matches!(file.replace(b"two"), Err(FileIoError::Io { .. })));
        // The fault is gone, yet the writer never tries again.
        assert!(matches!(
            file.replace(b"three"),
            Err(FileIoError::Poisoned { .. })
        ));
        assert!(file.is_poisoned());
        let reopened = AtomicFile::new(faulty, Path::new("/d"), "f");
        reopened.replace(b"four").unwrap();
        assert_eq!(reopened.read().unwrap(), b"four");
    }

    proptest! {
        /// Whatever write-side call a fault hits, no later replace succeeds,
        /// and after a crash the file holds the old or the new content.
        #[test]
        fn fault_then_crash_leaves_old_or_new(
            at in 0u64..4,
            kind in 0usize..5,
            keep in 0usize..8,
        ) {
            let (disk, faulty, file) = setup();
            file.replace(b"old-old").unwrap();
            let fault = [
                Fault::FailFsync,
                Fault::TornWrite { keep_bytes: keep },
                Fault::FailRename,
                Fault::FailSyncDir,
                Fault::Crash { keep_bytes: keep },
            ][kind];
            faulty.arm(at, fault);
            let mut failed = false;
            for round in 0..4 {
                let result = file.replace(format!("new-{round:03}").as_bytes());
                if failed {
                    let poisoned = matches!(result, Err(FileIoError::Poisoned { .. }));
                    prop_assert!(poisoned);
                } else if result.is_err() {
                    failed = true;
                }
            }
            prop_assert_eq!(failed, faulty.fired());
            disk.crash();
            let content = disk.read_file(Path::new("/d/f")).unwrap();
            let ok = content == b"old-old" || content.starts_with(b"new-");
            prop_assert!(ok, "torn content {:?}", content);
        }
    }
}
