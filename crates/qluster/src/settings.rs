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
//! ```

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

impl Settings {
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let settings: Settings = serde_yaml::from_str(&text)
            .with_context(|| format!("parsing config {}", path.display()))?;
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
