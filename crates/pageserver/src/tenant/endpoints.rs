//! Endpoints registered with a tenant (an extension to the API): which
//! Postgres endpoints serve which timeline, read-only at an LSN or writable
//! at its head. The pageserver never talks to a read-only endpoint after its
//! base backup, so without this it could not show them; the `sediment` CLI
//! registers an endpoint when it starts one and removes it when it stops it.
//!
//! A registration is a label, not a lease: the pageserver does not check
//! that the process is alive (an endpoint may run on another host). One
//! small file per endpoint, `<tenant>/endpoints/<name>.json`, written through
//! [`fileio::replace_file`] (temp name, fsync, rename, fsync the directory),
//! so after a crash a registration is there whole or not at all; an
//! unreadable file is logged and skipped at load. Deleting a timeline drops
//! the registrations on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api_types::{EndpointInfo, EndpointMode};
use parking_lot::Mutex;
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, TimelineId};

/// Directory (under the tenant) of the registration files.
pub const ENDPOINTS_DIR: &str = "endpoints";

/// Longest endpoint name, in bytes (the CLI's limit: a Postgres identifier).
pub const MAX_ENDPOINT_NAME_BYTES: usize = 63;

/// What is persisted about one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRecord {
    /// The timeline it serves.
    #[serde(with = "crate::ids::hex")]
    pub timeline_id: TimelineId,
    /// Read-only or writable.
    pub mode: EndpointMode,
    /// Where a read-only endpoint is frozen; where a writable one started.
    pub lsn: Lsn,
    /// Its TCP port.
    pub port: u16,
    /// Its postmaster's pid, when the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl EndpointRecord {
    /// The API's view of it.
    pub fn info(&self, tenant_id: TenantId, name: &str) -> EndpointInfo {
        EndpointInfo {
            name: name.to_owned(),
            tenant_id: tenant_id.to_string(),
            timeline_id: self.timeline_id.to_string(),
            mode: self.mode,
            lsn: self.lsn,
            port: self.port,
            pid: self.pid,
        }
    }
}

/// Why an endpoint name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointNameError {
    /// Empty, too long, or other characters than letters, digits, `-`, `_`.
    #[error("endpoint name {0:?} is not valid: it must be 1 to 63 letters, digits, '-' or '_'")]
    Invalid(String),
}

/// Checks a name: it becomes a file name, so only a safe alphabet.
pub fn validate_name(name: &str) -> Result<(), EndpointNameError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_ENDPOINT_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(EndpointNameError::Invalid(name.to_owned()))
    }
}

/// The registrations of one tenant.
#[derive(Debug)]
pub struct EndpointRegistry {
    dir: PathBuf,
    /// Name → registration; readers take it briefly, never across I/O.
    entries: Mutex<BTreeMap<String, EndpointRecord>>,
    /// Serialises writers (file first, then `entries`), so that the file
    /// and memory agree whatever order two requests for one name arrive in.
    /// Only registry writers wait on it; it is held across one small file
    /// write, never by a reader.
    writes: Mutex<()>,
}

impl EndpointRegistry {
    /// An empty registry persisted under `tenant_dir`; [`Self::load`] reads it.
    pub fn new(tenant_dir: &Path) -> EndpointRegistry {
        EndpointRegistry {
            dir: tenant_dir.join(ENDPOINTS_DIR),
            entries: Mutex::new(BTreeMap::new()),
            writes: Mutex::new(()),
        }
    }

    /// Reads the persisted registrations (replacing what is in memory). A
    /// malformed file is logged and skipped: a registration is a label,
    /// never a reason to fail a tenant load.
    pub fn load(&self) {
        let _writes = self.writes.lock();
        let mut loaded = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                *self.entries.lock() = loaded;
                return;
            }
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot list endpoint registrations");
                return;
            }
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<EndpointRecord>(&bytes).ok())
            {
                Some(record) => {
                    loaded.insert(name.to_owned(), record);
                }
                None => {
                    tracing::warn!(path = %path.display(), "ignoring an unreadable endpoint registration");
                }
            }
        }
        *self.entries.lock() = loaded;
    }

    /// Every registration, ordered by name.
    pub fn list(&self) -> Vec<(String, EndpointRecord)> {
        self.entries
            .lock()
            .iter()
            .map(|(name, record)| (name.clone(), record.clone()))
            .collect()
    }

    /// One registration.
    pub fn get(&self, name: &str) -> Option<EndpointRecord> {
        self.entries.lock().get(name).cloned()
    }

    /// Registers (or re-registers) `name` durably. Blocking: call off the
    /// async workers.
    pub fn register(&self, name: &str, record: EndpointRecord) -> std::io::Result<()> {
        let _writes = self.writes.lock();
        if !self.dir.exists() {
            std::fs::create_dir_all(&self.dir)?;
            if let Some(tenant_dir) = self.dir.parent() {
                fileio::sync_dir(tenant_dir)?;
            }
        }
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        fileio::replace_file(&self.path(name), &bytes)?;
        self.entries.lock().insert(name.to_owned(), record);
        Ok(())
    }

    /// Removes `name`'s registration on `timeline`; `false` when there was
    /// none. A registration of that name on another timeline belongs to a
    /// later start of the endpoint and stays. Blocking: call off the async
    /// workers.
    pub fn unregister(&self, name: &str, timeline: TimelineId) -> std::io::Result<bool> {
        let _writes = self.writes.lock();
        match self.entries.lock().get(name) {
            Some(record) if record.timeline_id != timeline => return Ok(false),
            _ => {}
        }
        let removed = self.remove_file(name)?;
        Ok(self.entries.lock().remove(name).is_some() || removed)
    }

    /// Drops every registration on `timeline` (the timeline was deleted).
    pub fn remove_timeline(&self, timeline: TimelineId) -> std::io::Result<()> {
        let _writes = self.writes.lock();
        let names: Vec<String> = self
            .entries
            .lock()
            .iter()
            .filter(|(_, record)| record.timeline_id == timeline)
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            self.remove_file(&name)?;
            self.entries.lock().remove(&name);
        }
        Ok(())
    }

    fn remove_file(&self, name: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {
                fileio::sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(timeline: &str, mode: EndpointMode, port: u16) -> EndpointRecord {
        EndpointRecord {
            timeline_id: timeline.parse().unwrap(),
            mode,
            lsn: Lsn(0x16B_9188),
            port,
            pid: Some(42),
        }
    }

    #[test]
    fn registrations_persist_and_follow_their_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let main = "11223344556677881122334455667788";
        let dev = "99223344556677881122334455667788";
        let registry = EndpointRegistry::new(dir.path());
        registry
            .register("ro", record(main, EndpointMode::ReadOnly, 55433))
            .unwrap();
        registry
            .register("rw", record(dev, EndpointMode::Writable, 55432))
            .unwrap();
        // Re-registering replaces.
        registry
            .register("ro", record(main, EndpointMode::ReadOnly, 55434))
            .unwrap();
        let reopened = EndpointRegistry::new(dir.path());
        reopened.load();
        assert_eq!(reopened.list(), registry.list());
        assert_eq!(reopened.get("ro").unwrap().port, 55434);
        // A torn or foreign file is skipped, the rest still loads.
        std::fs::write(dir.path().join("endpoints/bad.json"), b"{").unwrap();
        std::fs::write(dir.path().join("endpoints/x y.json"), b"{}").unwrap();
        reopened.load();
        assert_eq!(reopened.list().len(), 2);
        reopened.remove_timeline(dev.parse().unwrap()).unwrap();
        assert!(reopened.get("rw").is_none());
        // Only the registration on the named timeline goes.
        assert!(!reopened.unregister("ro", dev.parse().unwrap()).unwrap());
        assert!(reopened.get("ro").is_some());
        assert!(reopened.unregister("ro", main.parse().unwrap()).unwrap());
        assert!(!reopened.unregister("ro", main.parse().unwrap()).unwrap());
        let again = EndpointRegistry::new(dir.path());
        again.load();
        assert!(again.list().is_empty(), "{:?}", again.list());
    }

    #[test]
    fn names_are_file_safe() {
        assert!(validate_name("ro-1_a").is_ok());
        for bad in ["", "../x", "a b", "a.json", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
