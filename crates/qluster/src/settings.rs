//! The daemon's YAML configuration file (`qluster --config FILE`).
//!
//! ```yaml
//! node-id: 1
//! ip: 127.0.0.1
//! api-port: 7001
//! db-port: 5433
//! data-dir: /var/lib/qluster         # Raft log, hard state, snapshots
//! pg-data-dir: /var/lib/qluster/pg   # this node's PostgreSQL data directory
//! pg-bin-dir: /usr/lib/postgresql/15/bin
//! peers:                             # founding members, identical on each of them;
//!   - {id: 1, ip: 127.0.0.1, api-port: 7001, db-port: 5433}   # omitted on a node that
//!   - {id: 2, ip: 127.0.0.1, api-port: 7002, db-port: 5434}   # joins later (POST /node)
//! cluster: {node-timeout: 1500ms}    # initial cluster settings (founding nodes only)
//! synchronous-standbys: 1            # ANY k synchronous replication; 0 = async
//! bind-source-address: false         # peer traffic leaves from `ip`
//! api-token: 6f1c...                 # same on every node; POST/PATCH/DELETE need it
//! superuser-password: 3b9e...        # same on every node (Postgres role `postgres`)
//! replication-password: a47d...      # same on every node (role `qluster_replication`)
//! ```
//!
//! The three secrets are required (the passwords only with `manage-postgres`, the
//! default): there is no `trust` and no unauthenticated write API. They are not in the
//! Raft log, since `/info` serves the log to anyone; the operator distributes them with
//! the config file, which should be readable by the daemon's user only (a warning is
//! logged otherwise).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use qluster_core::{ClusterConfig, Node, NodeId, NodeRole};
use serde::Deserialize;

/// A founding member.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Peer {
    pub id: NodeId,
    pub ip: String,
    pub api_port: u16,
    pub db_port: u16,
}

/// Shortest accepted API token: 16 characters (e.g. 64 bits of hex) — anything shorter
/// is a placeholder, not a secret.
pub const MIN_TOKEN_LEN: usize = 16;

/// A secret from the config file. Its `Debug` form is redacted, so the settings can be
/// logged without leaking it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn default_bin_dir() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

fn yes() -> bool {
    true
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    pub node_id: NodeId,
    pub ip: String,
    pub api_port: u16,
    pub db_port: u16,
    pub data_dir: PathBuf,
    pub pg_data_dir: Option<PathBuf>,
    #[serde(default = "default_bin_dir")]
    pub pg_bin_dir: PathBuf,
    /// OS user Postgres runs as when the daemon runs as root.
    #[serde(default)]
    pub pg_os_user: Option<String>,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    #[serde(default)]
    pub synchronous_standbys: u32,
    /// When false the daemon runs consensus and the API only (no Postgres).
    #[serde(default = "yes")]
    pub manage_postgres: bool,
    /// Send peer traffic (Raft, API forwarding) from `ip` rather than from the address
    /// the kernel picks, so firewalls — and the partition tests' proxies — can tell the
    /// nodes apart. `ip` must then be a local address of the family the peers use.
    #[serde(default)]
    pub bind_source_address: bool,
    /// Bearer token every POST/PATCH/DELETE (including peers' `/raft` batches) must
    /// carry; the same on every node.
    pub api_token: Secret,
    /// Password of the Postgres superuser `postgres` (clients, pg_rewind, the daemon's
    /// own connections); the same on every node.
    #[serde(default)]
    pub superuser_password: Option<Secret>,
    /// Password of the replication role (standbys' streaming, base backups); the same
    /// on every node.
    #[serde(default)]
    pub replication_password: Option<Secret>,
    /// How often the leader collects read-only query ids from pg_stat_statements.
    #[serde(default = "default_readonly_interval", with = "humantime_serde_compat")]
    pub readonly_scan_interval: std::time::Duration,
}

fn default_readonly_interval() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a secret from the config file is refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0} must be at least {MIN_TOKEN_LEN} characters")]
    TooShort(&'static str),
    #[error("{0} may hold printable ASCII only (no spaces or control characters)")]
    BadCharacters(&'static str),
}

/// A secret must be printable ASCII without spaces: the token travels in an HTTP
/// header, the passwords in libpq's password file (one line per entry).
fn check_secret(
    name: &'static str,
    secret: Option<&Secret>,
    min: usize,
) -> Result<(), SecretError> {
    let value = secret.ok_or(SecretError::Missing(name))?.expose();
    if value.is_empty() {
        return Err(SecretError::Missing(name));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::BadCharacters(name));
    }
    if value.len() < min {
        return Err(SecretError::TooShort(name));
    }
    Ok(())
}

impl Settings {
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let settings = Self::parse(&text).with_context(|| format!("config {}", path.display()))?;
        warn_if_readable_by_others(path);
        Ok(settings)
    }

    /// Parses and validates the YAML text of a config file.
    pub fn parse(text: &str) -> anyhow::Result<Settings> {
        let settings: Settings = serde_yaml::from_str(text).context("parsing")?;
        check_secret("api-token", Some(&settings.api_token), MIN_TOKEN_LEN)?;
        if settings.manage_postgres {
            check_secret(
                "superuser-password",
                settings.superuser_password.as_ref(),
                1,
            )?;
            check_secret(
                "replication-password",
                settings.replication_password.as_ref(),
                1,
            )?;
        }
        if settings.node_id == 0 {
            anyhow::bail!("node-id must be positive");
        }
        if !settings.peers.is_empty() && !settings.peers.iter().any(|p| p.id == settings.node_id) {
            anyhow::bail!("peers must include this node ({})", settings.node_id);
        }
        let ports = [settings.api_port, settings.db_port]
            .into_iter()
            .chain(settings.peers.iter().flat_map(|p| [p.api_port, p.db_port]));
        if ports.into_iter().any(|p| p == 0) {
            anyhow::bail!("ports must be 1-65535");
        }
        if let Some(c) = &settings.cluster {
            c.validate_for(settings.peers.len().max(1))
                .context("cluster settings")?;
        }
        Ok(settings)
    }

    /// Where the daemon keeps libpq's password file for Postgres (see `postgres.rs`).
    pub fn secrets_dir(&self) -> PathBuf {
        self.data_dir.join("secrets")
    }

    pub fn pg_data_dir(&self) -> PathBuf {
        self.pg_data_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pgdata"))
    }

    pub fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }

    /// Founding members as map nodes.
    pub fn founding_nodes(&self) -> Vec<Node> {
        self.peers
            .iter()
            .map(|p| Node {
                id: p.id,
                ip: p.ip.clone(),
                db_port: Some(p.db_port),
                api_port: Some(p.api_port),
                role: NodeRole::Replica,
            })
            .collect()
    }
}

/// The config file holds secrets: say so when other users can read it.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "config {} holds secrets but is readable by other users (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "node-id: 1\nip: 127.0.0.1\napi-port: 7001\ndb-port: 5433\n\
                        data-dir: /tmp/q\n";

    fn parse(extra: &str) -> anyhow::Result<Settings> {
        Settings::parse(&format!("{BASE}{extra}"))
    }

    #[test]
    fn secrets_are_required_and_checked() {
        let full = "api-token: 0123456789abcdef\nsuperuser-password: su\n\
                    replication-password: re\n";
        let s = parse(full).unwrap();
        assert_eq!(s.api_token.expose(), "0123456789abcdef");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));

        let err = |extra: &str| format!("{:#}", parse(extra).unwrap_err());
        assert!(err("superuser-password: a\nreplication-password: b\n").contains("api-token"));
        assert!(
            err("api-token: short\nsuperuser-password: a\nreplication-password: b\n")
                .contains("at least 16")
        );
        assert!(err(
            "api-token: \"0123456789 abcdef\"\nsuperuser-password: a\nreplication-password: b\n"
        )
        .contains("printable"));
        assert!(
            err("api-token: 0123456789abcdef\nreplication-password: b\n")
                .contains("superuser-password")
        );
        assert!(err("api-token: 0123456789abcdef\nsuperuser-password: a\n")
            .contains("replication-password"));
        assert!(err(
            "api-token: 0123456789abcdef\nsuperuser-password: \"\"\nreplication-password: b\n"
        )
        .contains("superuser-password is required"));
        // Without a managed Postgres only the token is needed.
        parse("api-token: 0123456789abcdef\nmanage-postgres: false\n").unwrap();
    }
}
