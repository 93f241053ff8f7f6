//! Human names of timelines (`branch_name`, an extension to the spec).
//!
//! The spec knows timelines only by id; the `sediment` CLI names them
//! (`main`, `before-migration`) and passes the name in the timeline
//! creation request, so that the web console and other clients of the API
//! can show names without the CLI's work directory. Each name is one small
//! file, `<tenant>/branch_names/<timeline_id>.json` holding
//! `{"branch_name": "..."}`, written through [`fileio::replace_file`]
//! (temp name, fsync, rename) before the timeline is created: after a crash
//! a name is there whole or not at all, and a timeline is never visible
//! unnamed. A missing or unreadable file means "no name" (the timeline is
//! shown by id). Uniqueness within a tenant is checked where creations are
//! admitted (`Tenant::begin_creation`). The name is also uploaded in the
//! timeline's `index_part.json`, and an attach writes it back here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::TimelineId;

/// Directory (under the tenant) of the name files.
const NAMES_DIR: &str = "branch_names";
/// Longest accepted name, in bytes.
pub const MAX_NAME_CHARS: usize = 128;

/// Contents of one name file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameFile {
    branch_name: String,
}

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BranchNameError {
    /// Empty, too long, or with control characters.
    #[error("branch_name {0:?} is not valid: it must be 1 to 128 bytes of printable characters")]
    Invalid(String),
}

/// Checks a name: 1..=[`MAX_NAME_CHARS`] characters, no control characters (it
/// is shown in terminals and web pages).
pub fn validate(name: &str) -> Result<(), BranchNameError> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(BranchNameError::Invalid(name.to_owned()));
    }
    Ok(())
}

/// The name file of `timeline` under `tenant_dir`.
fn path(tenant_dir: &Path, timeline: TimelineId) -> PathBuf {
    tenant_dir.join(NAMES_DIR).join(format!("{timeline}.json"))
}

/// The persisted name, if any. An unreadable or malformed file is logged
/// and read as "no name": a name is a label, never a reason to fail a load.
pub fn read(tenant_dir: &Path, timeline: TimelineId) -> Option<String> {
    let path = path(tenant_dir, timeline);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the branch name");
            return None;
        }
    };
    match serde_json::from_slice::<NameFile>(&bytes) {
        Ok(file) if validate(&file.branch_name).is_ok() => Some(file.branch_name),
        Ok(_) | Err(_) => {
            tracing::warn!(path = %path.display(), "ignoring a malformed branch name file");
            None
        }
    }
}

/// Persists the name durably (replacing any earlier one).
pub fn write(tenant_dir: &Path, timeline: TimelineId, name: &str) -> std::io::Result<()> {
    let path = path(tenant_dir, timeline);
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(tenant) = dir.parent() {
                fileio::sync_dir(tenant)?;
            }
        }
    }
    let bytes = serde_json::to_vec(&NameFile {
        branch_name: name.to_owned(),
    })
    .map_err(std::io::Error::other)?;
    fileio::replace_file(&path, &bytes)
}

/// Removes the name file (deleting a timeline); absent is fine.
pub fn remove(tenant_dir: &Path, timeline: TimelineId) -> std::io::Result<()> {
    match std::fs::remove_file(path(tenant_dir, timeline)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_files_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let id: TimelineId = "11223344556677881122334455667788".parse().unwrap();
        assert_eq!(read(dir.path(), id), None);
        write(dir.path(), id, "before-migration").unwrap();
        assert_eq!(read(dir.path(), id).as_deref(), Some("before-migration"));
        write(dir.path(), id, "renamed").unwrap();
        assert_eq!(read(dir.path(), id).as_deref(), Some("renamed"));
        std::fs::write(path(dir.path(), id), b"{not json").unwrap();
        assert_eq!(read(dir.path(), id), None);
        remove(dir.path(), id).unwrap();
        remove(dir.path(), id).unwrap();
        assert_eq!(read(dir.path(), id), None);
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(validate("main").is_ok());
        assert!(validate("feature/ünïcode").is_ok());
        assert!(validate("").is_err());
        assert!(validate("a\nb").is_err());
        assert!(validate(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }
}
