//! Durable Raft storage: log entries, hard state, conf state and the latest snapshot, on
//! local files with fsync, and served to raft-rs through its [`Storage`] trait.
//!
//! Layout of the storage directory:
//! - `log.bin`: frames `[len u32 LE][crc32c u32 LE][protobuf Entry]`, appended and fsynced.
//!   An entry whose index is not past the previous one replaces the tail from that index
//!   on (Raft log truncation), so truncation needs no rewrite. A torn or corrupt last frame
//!   (crash during append) is cut off at open.
//! - `state.bin`: one frame, the `HardState`, replaced atomically (write temp, fsync,
//!   rename, fsync directory). The membership (`ConfState`) is not stored here: it comes
//!   from the snapshot, and Raft replays the committed membership changes after it, so a
//!   restarted node never applies a change twice.
//! - `snapshot.bin`: one frame holding the protobuf `Snapshot` (metadata + cluster state),
//!   replaced atomically. Taking a snapshot compacts the log: entries up to its index are
//!   dropped and `log.bin` is rewritten atomically.
//!
//! After any failed write or fsync the storage refuses further work (`Poisoned`): the
//! daemon must restart and recover from disk rather than trust a half-written state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

const LOG_FILE: &str = "log.bin";
const STATE_FILE: &str = "state.bin";
const SNAPSHOT_FILE: &str = "snapshot.bin";
const FRAME_HEADER: usize = 8;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("raft storage I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt raft storage file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("raft storage refused: an earlier write failed")]
    Poisoned,
}

/// Raft log and state on disk, mirrored in memory for reads.
pub struct DurableStorage {
    dir: PathBuf,
    hard_state: HardState,
    /// Membership as of the last applied entry (snapshot's at open).
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Entries after the snapshot, contiguous.
    entries: Vec<Entry>,
    /// `None` only in the shell left behind by [`DurableStorage::take`].
    log: Option<File>,
    poisoned: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + FRAME_HEADER);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Splits a buffer into frames; returns them and the length of the valid prefix.
fn read_frames(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= FRAME_HEADER {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let start = pos + FRAME_HEADER;
        let Some(body) = buf.get(start..start.saturating_add(len)) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        frames.push(body);
        pos = start + len;
    }
    (frames, pos)
}

fn encode<M: protobuf::Message>(m: &M, path: &Path) -> Result<Vec<u8>, StoreError> {
    m.write_to_bytes().map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn decode<M: protobuf::Message>(bytes: &[u8], path: &Path) -> Result<M, StoreError> {
    M::parse_from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `data` to `dir/name` atomically and durably, by the shared
/// protocol of the `fileio` crate (temp file, fsync, rename, fsync directory).
/// A failure poisons the storage at the caller (`guard`); it is never retried.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), StoreError> {
    fileio::write_atomic(&fileio::StdFileIo, dir, name, data)
        .map(|_| ())
        .map_err(io_err(&dir.join(name)))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl DurableStorage {
    /// Opens (or creates) the storage in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Leftovers of a write_atomic interrupted by a crash.
        fileio::remove_temp_files(&fileio::StdFileIo, dir).map_err(io_err(dir))?;
        let mut snapshot = Snapshot::default();
        let snap_path = dir.join(SNAPSHOT_FILE);
        if let Some(buf) = read_optional(&snap_path)? {
            let (frames, _) = read_frames(&buf);
            let first = frames.first().ok_or_else(|| StoreError::Corrupt {
                path: snap_path.clone(),
                reason: "no valid frame".into(),
            })?;
            snapshot = decode(first, &snap_path)?;
        }
        let mut hard_state = HardState::default();
        let conf_state = snapshot.get_metadata().get_conf_state().clone();
        let state_path = dir.join(STATE_FILE);
        if let Some(buf) = read_optional(&state_path)? {
            let (frames, _) = read_frames(&buf);
            let first = frames.first().ok_or_else(|| StoreError::Corrupt {
                path: state_path.clone(),
                reason: "no valid frame".into(),
            })?;
            hard_state = decode(first, &state_path)?;
        }
        let log_path = dir.join(LOG_FILE);
        let entries = Self::replay_log(&log_path, snapshot.get_metadata().index)?;
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            hard_state,
            conf_state,
            snapshot,
            entries,
            log: Some(log),
            poisoned: false,
        })
    }

    /// Moves the storage out, leaving a refusing shell; used to rebuild the Raft node
    /// with new timing without reopening files.
    pub fn take(&mut self) -> DurableStorage {
        let shell = DurableStorage {
            dir: self.dir.clone(),
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            entries: Vec::new(),
            log: None,
            poisoned: true,
        };
        std::mem::replace(self, shell)
    }

    /// Reads the log, applying tail replacement, and cuts a torn tail off the file.
    fn replay_log(path: &Path, snapshot_index: u64) -> Result<Vec<Entry>, StoreError> {
        let mut buf = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut buf).map_err(io_err(path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(path)(e)),
        }
        let (frames, valid) = read_frames(&buf);
        let mut entries: Vec<Entry> = Vec::new();
        for body in frames {
            let e: Entry = decode(body, path)?;
            if e.index <= snapshot_index {
                continue;
            }
            let keep = (e.index - snapshot_index - 1) as usize;
            if keep > entries.len() {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("gap before entry {}", e.index),
                });
            }
            entries.truncate(keep);
            entries.push(e);
        }
        if valid < buf.len() {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            f.set_len(valid as u64).map_err(io_err(path))?;
            f.sync_all().map_err(io_err(path))?;
        }
        Ok(entries)
    }

    /// Whether anything (a snapshot or entries) was ever stored.
    pub fn is_initialized(&self) -> bool {
        self.snapshot.get_metadata().index > 0 || !self.entries.is_empty()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.poisoned {
            Err(StoreError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn guard<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// Appends entries durably (fsync), replacing any conflicting tail.
    pub fn append(&mut self, new: &[Entry]) -> Result<(), StoreError> {
        self.check()?;
        let Some(first) = new.first() else {
            return Ok(());
        };
        let base = self.snapshot.get_metadata().index;
        if first.index <= base {
            return Ok(()); // already covered by the snapshot
        }
        let path = self.dir.join(LOG_FILE);
        let mut buf = Vec::new();
        for e in new {
            buf.extend(frame(&encode(e, &path)?));
        }
        let r = match self.log.as_mut() {
            Some(log) => log
                .write_all(&buf)
                .and_then(|_| log.sync_data())
                .map_err(io_err(&path)),
            None => Err(StoreError::Poisoned),
        };
        self.guard(r)?;
        self.entries.truncate((first.index - base - 1) as usize);
        self.entries.extend_from_slice(new);
        Ok(())
    }

    fn write_state(&mut self) -> Result<(), StoreError> {
        self.check()?;
        let path = self.dir.join(STATE_FILE);
        let buf = frame(&encode(&self.hard_state, &path)?);
        let r = write_atomic(&self.dir, STATE_FILE, &buf);
        self.guard(r)
    }

    /// Persists a new hard state.
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StoreError> {
        self.hard_state = hs;
        self.write_state()
    }

    /// Persists the commit index only.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        self.hard_state.commit = commit;
        self.write_state()
    }

    /// Records the membership produced by an applied change (persisted with the next
    /// snapshot; until then Raft replays the change from the log).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot (its data is the serialized cluster state).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Entries currently held (after the snapshot).
    pub fn log_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Installs a snapshot received from the leader (or the bootstrap snapshot).
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> Result<(), StoreError> {
        self.check()?;
        let meta = snap.get_metadata().clone();
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = frame(&encode(&snap, &path)?);
        let r = write_atomic(&self.dir, SNAPSHOT_FILE, &bytes);
        self.guard(r)?;
        self.snapshot = snap;
        self.entries.clear();
        self.rewrite_log()?;
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.conf_state = meta.get_conf_state().clone();
        self.write_state()
    }

    /// Log compaction: snapshots the state machine at `applied` (whose serialized state is
    /// `data`, with the conf state in force at that index) and drops the entries it covers.
    pub fn compact(&mut self, applied: u64, data: Vec<u8>) -> Result<(), StoreError> {
        self.check()?;
        let base = self.snapshot.get_metadata().index;
        if applied <= base || applied > self.last() {
            return Ok(());
        }
        let term = self.term_of(applied).unwrap_or(0);
        let mut snap = Snapshot::default();
        snap.set_data(data.into());
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = frame(&encode(&snap, &path)?);
        let r = write_atomic(&self.dir, SNAPSHOT_FILE, &bytes);
        self.guard(r)?;
        self.entries.drain(..(applied - base) as usize);
        self.snapshot = snap;
        self.rewrite_log()
    }

    fn rewrite_log(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(LOG_FILE);
        let mut buf = Vec::new();
        for e in &self.entries {
            buf.extend(frame(&encode(e, &path)?));
        }
        let r = write_atomic(&self.dir, LOG_FILE, &buf).and_then(|_| {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_err(&path))
        });
        let f = self.guard(r)?;
        self.log = Some(f);
        Ok(())
    }

    fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last(&self) -> u64 {
        self.snapshot.get_metadata().index + self.entries.len() as u64
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        let meta = self.snapshot.get_metadata();
        if idx == meta.index {
            return Some(meta.term);
        }
        if idx < self.first() || idx > self.last() {
            return None;
        }
        self.entries
            .get((idx - self.first()) as usize)
            .map(|e| e.term)
    }
}

impl Storage for DurableStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.first();
        let mut out = self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot.get_metadata().index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Entries after the snapshot stay in the log, so an older snapshot is still a
        // valid starting point for a follower; the leader streams the rest.
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Default::default()
        }
    }

    #[test]
    fn log_and_state_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DurableStorage::open(dir.path()).unwrap();
            s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
            let hs = HardState {
                term: 2,
                vote: 3,
                commit: 2,
                ..Default::default()
            };
            s.set_hard_state(hs).unwrap();
            // A new leader overwrites index 3 onwards.
            s.append(&[entry(3, 2), entry(4, 2)]).unwrap();
        }
        let s = DurableStorage::open(dir.path()).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(3).unwrap(), 2);
        assert_eq!(s.hard_state().vote, 3);
        assert_eq!(s.hard_state().commit, 2);
    }

    #[test]
    fn torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DurableStorage::open(dir.path()).unwrap();
            s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 2).unwrap();
        let mut s = DurableStorage::open(dir.path()).unwrap();
        assert_eq!(s.last_index().unwrap(), 1);
        s.append(&[entry(2, 3)]).unwrap();
        let s = DurableStorage::open(dir.path()).unwrap();
        assert_eq!(s.term(2).unwrap(), 3);
    }

    #[test]
    fn compaction_drops_entries_and_keeps_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DurableStorage::open(dir.path()).unwrap();
            s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
            s.compact(7, b"state".to_vec()).unwrap();
            assert_eq!(s.first_index().unwrap(), 8);
            let ctx = GetEntriesContext::empty(false);
            assert!(matches!(
                s.entries(5, 9, None, ctx),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
        }
        let s = DurableStorage::open(dir.path()).unwrap();
        assert_eq!(s.first_index().unwrap(), 8);
        assert_eq!(s.last_index().unwrap(), 10);
        assert_eq!(s.term(7).unwrap(), 1);
        assert_eq!(&s.latest_snapshot().data[..], b"state");
    }

    #[test]
    fn corrupt_state_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"\x05\x00\x00\x00garbage").unwrap();
        assert!(DurableStorage::open(dir.path()).is_err());
    }
}
