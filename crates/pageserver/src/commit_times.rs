//! When each part of a timeline's history was committed: the map between
//! commit timestamps and LSNs behind `get_lsn_by_timestamp`,
//! `get_timestamp_of_lsn` and branching at a point in time.
//!
//! Ingest reports every commit record (end LSN and the commit's own
//! timestamp); the samples are kept, in LSN order, in memory and appended
//! (buffered) to
//! `<tenant>/commit_times/<timeline_id>.bin` as 16-byte little-endian
//! `(lsn, unix_micros)` entries. The file is fsynced by the pageserver's
//! housekeeping, not per sample: samples lost in a crash are recreated when
//! the local WAL above `disk_consistent_lsn` is ingested again; older lost
//! samples only make time lookups coarser (an earlier, still consistent
//! point), never wrong. A torn last entry is ignored on open. A failed
//! append or fsync poisons the writer ([`fileio::Poison`]): the fsync is
//! never retried (a retry can succeed after the kernel dropped the data);
//! further samples stay in memory only until the timeline is reopened.
//!
//! Commit timestamps are taken before the commit record is inserted, so they
//! are not strictly increasing in LSN order; samples are clamped to be
//! monotonic, which keeps lookups a binary search.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use postgres_wal::Lsn;

const ENTRY_SIZE: usize = 16;

/// Where a timestamp falls in a timeline's commit history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsnForTime {
    /// The end of the last commit at or before the timestamp.
    Present(Lsn),
    /// The timestamp is before every known commit.
    Past,
    /// The timestamp is after every known commit.
    Future,
    /// No commit is known at all.
    NoData,
}

/// The commit-time samples of one timeline.
#[derive(Debug)]
pub struct CommitTimes {
    path: PathBuf,
    state: Mutex<State>,
    poison: fileio::Poison,
}

#[derive(Debug, Default)]
struct State {
    /// `(lsn, unix_micros)`, both non-decreasing.
    entries: Vec<(Lsn, i64)>,
    file: Option<BufWriter<File>>,
    dirty: bool,
}

impl CommitTimes {
    /// No samples; new ones are appended to `path`.
    pub fn empty(path: &Path) -> CommitTimes {
        CommitTimes {
            path: path.to_owned(),
            state: Mutex::new(State::default()),
            poison: fileio::Poison::new(),
        }
    }

    /// Loads the samples at `path` (none if the file does not exist).
    pub fn open(path: &Path) -> std::io::Result<CommitTimes> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let mut entries: Vec<(Lsn, i64)> = Vec::with_capacity(bytes.len() / ENTRY_SIZE);
        for chunk in bytes.chunks_exact(ENTRY_SIZE) {
            let (lsn, micros) = chunk.split_at(8);
            let lsn = Lsn(u64::from_le_bytes(lsn.try_into().unwrap_or_default()));
            let micros = i64::from_le_bytes(micros.try_into().unwrap_or_default());
            // A file damaged in the middle would break the ordering the
            // lookups rely on: keep the ordered prefix.
            if entries
                .last()
                .is_some_and(|&(last_lsn, last_micros)| lsn <= last_lsn || micros < last_micros)
            {
                break;
            }
            entries.push((lsn, micros));
        }
        let kept = entries.len() * ENTRY_SIZE;
        if kept != bytes.len() {
            // Later appends must start on an entry boundary.
            OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(kept as u64)?;
        }
        Ok(CommitTimes {
            path: path.to_owned(),
            state: Mutex::new(State {
                entries,
                file: None,
                dirty: false,
            }),
            poison: fileio::Poison::new(),
        })
    }

    /// Records that the commit ending at `lsn` happened at `unix_micros`.
    /// Samples at or below the newest LSN are ignored (WAL ingested again).
    pub fn record(&self, lsn: Lsn, unix_micros: i64) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let micros = match state.entries.last() {
            Some(&(last_lsn, _)) if lsn <= last_lsn => return Ok(()),
            Some(&(_, last_micros)) => unix_micros.max(last_micros),
            None => unix_micros,
        };
        state.entries.push((lsn, micros));
        if self.poison.is_poisoned() {
            // Kept in memory only; `sync` reports the poisoning, once per
            // housekeeping round rather than once per commit.
            return Ok(());
        }
        if state.file.is_none() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            state.file = Some(BufWriter::new(file));
        }
        let mut entry = [0u8; ENTRY_SIZE];
        entry[..8].copy_from_slice(&lsn.0.to_le_bytes());
        entry[8..].copy_from_slice(&micros.to_le_bytes());
        if let Some(file) = state.file.as_mut() {
            self.poison
                .guard("append", &self.path, || file.write_all(&entry))
                .map_err(std::io::Error::other)?;
        }
        state.dirty = true;
        Ok(())
    }

    /// Makes the recorded samples durable.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut state = self.state.lock();
        if !state.dirty {
            return Ok(());
        }
        if let Some(file) = state.file.as_mut() {
            self.poison
                .guard("fsync", &self.path, || {
                    file.flush()?;
                    file.get_ref().sync_data()
                })
                .map_err(std::io::Error::other)?;
        }
        state.dirty = false;
        Ok(())
    }

    /// The LSN of the timeline as of `unix_micros`, looking only at commits
    /// at or below `max_lsn`.
    pub fn lsn_for_time(&self, unix_micros: i64, max_lsn: Lsn) -> LsnForTime {
        let state = self.state.lock();
        let usable = state.entries.partition_point(|&(lsn, _)| lsn <= max_lsn);
        let entries = &state.entries[..usable];
        let Some(&(_, newest)) = entries.last() else {
            return LsnForTime::NoData;
        };
        if unix_micros >= newest {
            return LsnForTime::Future;
        }
        match entries.partition_point(|&(_, micros)| micros <= unix_micros) {
            0 => LsnForTime::Past,
            n => LsnForTime::Present(entries[n - 1].0),
        }
    }

    /// The time of the last commit at or before `lsn`.
    pub fn time_of_lsn(&self, lsn: Lsn) -> Option<i64> {
        let state = self.state.lock();
        match state.entries.partition_point(|&(at, _)| at <= lsn) {
            0 => None,
            n => Some(state.entries[n - 1].1),
        }
    }

    /// Deletes the file (timeline deletion).
    pub fn remove(&self) -> std::io::Result<()> {
        let mut state = self.state.lock();
        state.file = None;
        state.entries.clear();
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sync_is_never_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let times = CommitTimes::open(&path).unwrap();
        times.record(Lsn(100), 10).unwrap();
        // Stands in for a failed fsync: the next sync must not try again.
        let _ = times
            .poison
            .guard("fsync", &path, || -> std::io::Result<()> {
                Err(std::io::Error::other("injected"))
            });
        let error = times.sync().unwrap_err().to_string();
        assert!(error.contains("reopen"), "{error}");
        times.record(Lsn(200), 20).unwrap();
        assert_eq!(times.lsn_for_time(25, Lsn::MAX), LsnForTime::Future);
        assert!(times.sync().is_err());
        // Reopening re-reads what is really on disk and writes again.
        drop(times);
        let reopened = CommitTimes::open(&path).unwrap();
        reopened.record(Lsn(300), 30).unwrap();
        reopened.sync().unwrap();
    }

    #[test]
    fn lookups_follow_the_samples_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let times = CommitTimes::open(&path).unwrap();
        assert_eq!(times.lsn_for_time(5, Lsn::MAX), LsnForTime::NoData);
        times.record(Lsn(100), 10).unwrap();
        times.record(Lsn(200), 20).unwrap();
        times.record(Lsn(150), 15).unwrap(); // re-ingested: ignored
        times.record(Lsn(300), 19).unwrap(); // clamped to 20
        times.record(Lsn(400), 40).unwrap();
        times.sync().unwrap();
        for times in [times, CommitTimes::open(&path).unwrap()] {
            assert_eq!(times.lsn_for_time(5, Lsn::MAX), LsnForTime::Past);
            assert_eq!(
                times.lsn_for_time(10, Lsn::MAX),
                LsnForTime::Present(Lsn(100))
            );
            assert_eq!(
                times.lsn_for_time(25, Lsn::MAX),
                LsnForTime::Present(Lsn(300))
            );
            assert_eq!(times.lsn_for_time(40, Lsn::MAX), LsnForTime::Future);
            assert_eq!(times.lsn_for_time(25, Lsn(250)), LsnForTime::Future);
            assert_eq!(times.time_of_lsn(Lsn(99)), None);
            assert_eq!(times.time_of_lsn(Lsn(250)), Some(20));
        }
    }

    #[test]
    fn a_torn_or_damaged_file_keeps_its_ordered_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let mut bytes = Vec::new();
        for (lsn, micros) in [(100u64, 10i64), (200, 20), (50, 30)] {
            bytes.extend_from_slice(&lsn.to_le_bytes());
            bytes.extend_from_slice(&micros.to_le_bytes());
        }
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let times = CommitTimes::open(&path).unwrap();
        assert_eq!(times.lsn_for_time(25, Lsn::MAX), LsnForTime::Future);
        assert_eq!(
            times.lsn_for_time(15, Lsn::MAX),
            LsnForTime::Present(Lsn(100))
        );
    }
}
