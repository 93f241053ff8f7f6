//! WAL positions of a test cluster and copying its WAL segment files out.
//!
//! `seal_wal` (in place) and `collect_wal` (a copy) end the current segment first (CHECKPOINT, then
//! `pg_switch_wal()`), so every record written so far lies in *complete*
//! segment files, and copies only the segments up to that switch: files with
//! higher numbers in `pg_wal` are recycled old segments full of stale bytes
//! and would confuse any decoder.

use std::path::{Path, PathBuf};

use postgres_wal::Lsn;

use crate::cluster::PgCluster;
use crate::error::{Error, Result};

/// What [`PgCluster::collect_wal`] copied.
#[derive(Debug, Clone)]
pub struct CollectedWal {
    /// Directory holding the segments (the copy, or `pg_wal` itself).
    pub dir: PathBuf,
    /// Segment file names (24 hex digits), ascending.
    pub segments: Vec<String>,
    /// End of the `XLOG_SWITCH` record that closed the last segment: every
    /// record before it is in the copied files.
    pub end_lsn: Lsn,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
}

impl CollectedWal {
    /// First segment's file name.
    pub fn first_segment(&self) -> Option<&str> {
        self.segments.first().map(String::as_str)
    }

    /// Last segment's file name.
    pub fn last_segment(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// Full paths of the copied segments, ascending.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| self.dir.join(s)).collect()
    }
}

impl PgCluster {
    /// `pg_current_wal_lsn()`: where the next record will be inserted.
    pub fn current_wal_lsn(&self) -> Result<Lsn> {
        self.query_scalar("SELECT pg_current_wal_lsn()")
    }

    /// `pg_current_wal_flush_lsn()`.
    pub fn flush_wal_lsn(&self) -> Result<Lsn> {
        self.query_scalar("SELECT pg_current_wal_flush_lsn()")
    }

    /// `pg_switch_wal()`: closes the current segment; returns the end of the
    /// switch record (or the current position if the segment was empty).
    pub fn switch_wal(&self) -> Result<Lsn> {
        self.query_scalar("SELECT pg_switch_wal()")
    }

    /// Runs `CHECKPOINT`.
    pub fn checkpoint(&self) -> Result<()> {
        self.psql("CHECKPOINT").map(drop)
    }

    /// `wal_segment_size` in bytes.
    pub fn wal_segment_size(&self) -> Result<u64> {
        // PG15 reports this setting in bytes (unit 'B').
        self.query_scalar("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
    }

    /// The live `pg_wal` directory (owned by the Postgres user; readable by root).
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir().join("pg_wal")
    }

    /// Makes all WAL so far land in complete segments (CHECKPOINT +
    /// `pg_switch_wal()`) and lists those segment files of the current
    /// timeline *in place* in `pg_wal`, without copying. The files stay
    /// valid as long as the server does not recycle them: stop the server
    /// next, or start it with [`crate::PgClusterBuilder::retain_all_wal`].
    /// Saves copying gigabytes when the WAL is only read once.
    pub fn seal_wal(&self) -> Result<CollectedWal> {
        // The checkpoint guarantees the segment is not empty, so the switch
        // really writes a switch record and returns its end.
        self.checkpoint()?;
        let last: String = self.query_scalar("SELECT pg_walfile_name(pg_switch_wal())")?;
        let end_lsn = self.current_wal_lsn()?;
        let segment_size = self.wal_segment_size()?;
        let dir = self.wal_dir();
        let segments = list_segments(&dir, &last)?;
        Ok(CollectedWal {
            dir,
            segments,
            end_lsn,
            segment_size,
        })
    }

    /// [`PgCluster::seal_wal`], then copies the segments into `dest`
    /// (created if missing). Use [`crate::PgClusterBuilder::retain_all_wal`]
    /// to get every segment since the server started; otherwise checkpoints
    /// may already have removed old ones.
    pub fn collect_wal(&self, dest: &Path) -> Result<CollectedWal> {
        let sealed = self.seal_wal()?;
        std::fs::create_dir_all(dest).map_err(|e| Error::io("create dir", dest, e))?;
        for name in &sealed.segments {
            let from = sealed.dir.join(name);
            let to = dest.join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io("copy", &from, e))?;
        }
        Ok(CollectedWal {
            dir: dest.to_path_buf(),
            ..sealed
        })
    }
}

/// Segment files in `wal_dir` on the same timeline as `last` and not after
/// it, ascending. Skips `.partial`, `.history`, `archive_status`.
pub fn list_segments(wal_dir: &Path, last: &str) -> Result<Vec<String>> {
    if !is_segment_name(last) {
        return Err(Error::UnexpectedOutput {
            what: "pg_walfile_name".to_owned(),
            output: last.to_owned(),
        });
    }
    let timeline = &last[..8];
    let entries = std::fs::read_dir(wal_dir).map_err(|e| Error::io("list", wal_dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", wal_dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Same length and all-uppercase-hex, so string order is numeric order.
        if is_segment_name(&name) && name.starts_with(timeline) && name.as_str() <= last {
            segments.push(name);
        }
    }
    segments.sort();
    Ok(segments)
}

/// Whether `name` looks like a WAL segment file name (24 uppercase hex digits).
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert!(is_segment_name("000000010000000000000001"));
        assert!(is_segment_name("0000000100000000000000AF"));
        assert!(!is_segment_name("00000001000000000000000a"));
        assert!(!is_segment_name("000000010000000000000001.partial"));
        assert!(!is_segment_name("00000002.history"));
        assert!(!is_segment_name("archive_status"));
    }

    #[test]
    fn list_segments_filters_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "000000010000000000000003",
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000009", // recycled, after the switch
            "000000020000000000000001", // other timeline
            "000000010000000000000002.partial",
            "00000002.history",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("archive_status")).unwrap();
        let got = list_segments(dir.path(), "000000010000000000000003").unwrap();
        assert_eq!(
            got,
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000003"
            ]
        );
        assert!(list_segments(dir.path(), "garbage").is_err());
    }
}
