//! [`FaultyIo`]: injects one fault into an otherwise working [`FileIo`].

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{AppendFile, DirEntry, FileIo, ReadAt};

/// A fault [`FaultyIo`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Write only the first `keep_bytes` bytes, then fail (a crash mid-write).
    TornWrite { keep_bytes: usize },
    /// Write everything, then report the fsync as failed.
    FailFsync,
    /// Fail the rename.
    FailRename,
    /// Fail the directory fsync.
    FailSyncDir,
    /// Power loss: counted over every write-side call; the chosen call
    /// leaves a torn `keep_bytes` prefix if it is a file write, and it and
    /// every later write-side call fail without effect.
    Crash { keep_bytes: usize },
}

/// Wraps another [`FileIo`] and injects one [`Fault`] at the N-th write-side
/// call, for crash-safety tests. Reads pass through. Append handles it
/// opens share its armed fault.
#[derive(Debug)]
pub struct FaultyIo {
    inner: Arc<dyn FileIo>,
    faults: Arc<Faults>,
}

/// The armed fault and the call count, shared with open append handles.
#[derive(Debug, Default)]
struct Faults {
    armed: Mutex<Option<(u64, Fault)>>,
    write_calls: AtomicU64,
    dead: AtomicBool,
}

impl FaultyIo {
    /// A pass-through wrapper with no fault armed.
    pub fn new(inner: Arc<dyn FileIo>) -> FaultyIo {
        FaultyIo {
            inner,
            faults: Arc::default(),
        }
    }

    /// Injects `fault` at the `after`-th (0-based) future call of the kind
    /// the fault concerns: `write_file` and [`AppendFile::append`] for torn
    /// writes, `write_file` and [`AppendFile::sync_data`] for failed fsyncs,
    /// `rename`, `sync_dir`, or any write-side call for [`Fault::Crash`].
    /// Replaces any armed fault.
    pub fn arm(&self, after: u64, fault: Fault) {
        self.faults.write_calls.store(0, Ordering::SeqCst);
        *self.faults.armed.lock() = Some((after, fault));
    }

    /// Removes any armed fault.
    pub fn disarm(&self) {
        *self.faults.armed.lock() = None;
    }

    /// Whether the armed fault has fired (or none was armed).
    pub fn fired(&self) -> bool {
        self.faults.armed.lock().is_none()
    }

    /// Whether a [`Fault::Crash`] has fired.
    pub fn crashed(&self) -> bool {
        self.faults.crashed()
    }

    fn take(&self, matches: impl Fn(Fault) -> bool) -> Option<Fault> {
        self.faults.take(matches)
    }

    fn check_alive(&self, what: &str) -> io::Result<()> {
        self.faults.check_alive(what)
    }
}

impl Faults {
    fn crashed(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Returns the fault to inject now for a call of kind `matches`, if any.
    fn take(&self, matches: impl Fn(Fault) -> bool) -> Option<Fault> {
        let mut armed = self.armed.lock();
        let (after, fault) = (*armed)?;
        if !matches(fault) && !matches!(fault, Fault::Crash { .. }) {
            return None;
        }
        if self.write_calls.fetch_add(1, Ordering::SeqCst) == after {
            *armed = None;
            if matches!(fault, Fault::Crash { .. }) {
                self.dead.store(true, Ordering::SeqCst);
            }
            return Some(fault);
        }
        None
    }

    /// Fails a write-side call after a crash, or at the crash itself.
    fn check_alive(&self, what: &str) -> io::Result<()> {
        if self.crashed() || self.take(|_| false).is_some() {
            return Err(injected(what));
        }
        Ok(())
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl FileIo for FaultyIo {
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.crashed() {
            return Err(injected("write after crash"));
        }
        match self.take(|f| matches!(f, Fault::TornWrite { .. } | Fault::FailFsync)) {
            Some(Fault::TornWrite { keep_bytes } | Fault::Crash { keep_bytes }) => {
                let keep = keep_bytes.min(data.len());
                self.inner.write_file(path, &data[..keep])?;
                Err(injected("torn write"))
            }
            Some(_) => {
                self.inner.write_file(path, data)?;
                Err(injected("fsync failed"))
            }
            None => self.inner.write_file(path, data),
        }
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read_file(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        self.inner.open_read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.crashed() || self.take(|f| f == Fault::FailRename).is_some() {
            return Err(injected("rename failed"));
        }
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.crashed() || self.take(|f| f == Fault::FailSyncDir).is_some() {
            return Err(injected("directory fsync failed"));
        }
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check_alive("create_dir_all")?;
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_alive("remove_file")?;
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check_alive("remove_dir_all")?;
        self.inner.remove_dir_all(dir)
    }
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.check_alive("create_append")?;
        let inner = self.inner.create_append(path)?;
        Ok(Box::new(FaultyAppend {
            inner,
            faults: self.faults.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let inner = self.inner.open_append(path)?;
        Ok(Box::new(FaultyAppend {
            inner,
            faults: self.faults.clone(),
        }))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.check_alive("truncate")?;
        self.inner.truncate(path, len)
    }
}

/// An append handle of a [`FaultyIo`]: torn appends and failed fsyncs.
#[derive(Debug)]
struct FaultyAppend {
    inner: Box<dyn AppendFile>,
    faults: Arc<Faults>,
}

impl AppendFile for FaultyAppend {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.faults.crashed() {
            return Err(injected("append after crash"));
        }
        match self.faults.take(|f| matches!(f, Fault::TornWrite { .. })) {
            Some(Fault::TornWrite { keep_bytes } | Fault::Crash { keep_bytes }) => {
                let keep = keep_bytes.min(data.len());
                self.inner.append(&data[..keep])?;
                Err(injected("torn write"))
            }
            Some(_) => Err(injected("append failed")),
            None => self.inner.append(data),
        }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.faults.crashed() || self.faults.take(|f| f == Fault::FailFsync).is_some() {
            // The inner file is not synced: what was appended since the last
            // successful sync is not durable (a MemoryFileIo crash loses it).
            return Err(injected("fsync failed"));
        }
        self.inner.sync_data()
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.faults.check_alive("preallocate")?;
        self.inner.preallocate(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryFileIo;

    #[test]
    fn append_handles_share_the_armed_fault() {
        let memory = Arc::new(MemoryFileIo::new());
        let io = FaultyIo::new(memory.clone());
        let dir = Path::new("/f");
        io.create_dir_all(dir).unwrap();
        let path = dir.join("log");
        let mut file = io.create_append(&path).unwrap();
        io.sync_dir(dir).unwrap();
        file.append(b"durable").unwrap();
        file.sync_data().unwrap();

        io.arm(0, Fault::FailFsync);
        file.append(b"-lost").unwrap();
        assert!(file.sync_data().is_err());
        assert!(io.fired());
        memory.crash();
        assert_eq!(memory.read_file(&path).unwrap(), b"durable");

        // After the crash, a new process opens the file again.
        let mut file = io.open_append(&path).unwrap();
        io.arm(1, Fault::TornWrite { keep_bytes: 2 });
        file.append(b"-a").unwrap();
        assert!(file.append(b"-bcd").is_err());
        assert_eq!(memory.read_file(&path).unwrap(), b"durable-a-b");
    }
}
