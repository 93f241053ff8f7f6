//! Small crash-safe file helpers: write to a temporary name, fsync, rename,
//! fsync the directory. A reader after a crash sees the old file or the new
//! one, never a torn mix.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Suffix of files and directories that are still being written; such
/// leftovers of a crash are removed at startup.
pub const TEMP_SUFFIX: &str = "___temp";
/// Suffix of directories whose deletion has begun.
pub const DELETED_SUFFIX: &str = "___deleted";

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".");
    temp_name.push(TEMP_SUFFIX);
    let temp_path = std::path::PathBuf::from(temp_name);
    {
        let mut file = File::create(&temp_path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp_path, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Fsyncs a directory so that renames inside it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Total size of the regular files under `dir` (0 if it cannot be read).
pub fn directory_size_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_file(&path, b"one").unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(directory_size_bytes(dir.path()), 3);
    }
}
