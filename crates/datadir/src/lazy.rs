//! Writing a lazy data directory to disk: the small files from a lazy
//! archive ([`crate::Basebackup::write_lazy_tar`]) and every relation
//! segment as a correctly sized *sparse* file, whose pages a fill process
//! writes on first access. Start cost grows with the number of files, not
//! with bytes.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Why a lazy data directory could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LazyDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing segment path {0:?}: not a plain relative path")]
    BadPath(String),
}

/// A sparse file to create: `size_bytes` of holes at `path` (relative).
#[derive(Clone, Debug)]
pub struct SparseFile<'a> {
    pub path: &'a str,
    pub size_bytes: u64,
}

/// `dir/relative`, refusing absolute paths and `..` so a bad listing cannot
/// write outside the data directory.
pub fn checked_join(dir: &Path, relative: &str) -> Result<PathBuf, LazyDirError> {
    let path = Path::new(relative);
    if relative.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(LazyDirError::BadPath(relative.to_owned()));
    }
    Ok(dir.join(path))
}

/// Unpacks `tar` into `dest` (which must exist) and creates every sparse
/// file. Files are created 0600, directories 0700, as PostgreSQL wants.
pub fn write_lazy_datadir<'a, R: Read>(
    dest: &Path,
    tar: R,
    sparse: impl IntoIterator<Item = SparseFile<'a>>,
) -> Result<(), LazyDirError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LazyDirError::Io { path, source }
    };
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.unpack(dest).map_err(io(dest))?;
    for file in sparse {
        let path = checked_join(dest, file.path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.set_len(file.size_bytes).map_err(io(&path))?;
        set_mode(&path, 0o600).map_err(io(&path))?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_directory_are_refused() {
        let dir = Path::new("/tmp/x");
        for bad in ["", "/etc/passwd", "../x", "base/../../x", "./base"] {
            assert!(checked_join(dir, bad).is_err(), "{bad}");
        }
        assert_eq!(
            checked_join(dir, "base/5/1259").unwrap(),
            Path::new("/tmp/x/base/5/1259")
        );
    }
}
