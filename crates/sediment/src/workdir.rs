//! The CLI's work directory and its config file, `sediment.toml`.
//!
//! Layout: `sediment.toml` (ports, Postgres binaries, default tenant, branch
//! names), `pageserver/` (the daemon's work directory, with its own
//! `pageserver.toml`, log and pid file), `endpoints/<name>/` (one Postgres
//! data directory and its metadata per endpoint).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Name of the CLI's config file.
pub const CONFIG_FILE: &str = "sediment.toml";

/// Where the pageserver listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageserverSettings {
    /// Management API address.
    pub http_addr: String,
    /// Page service address.
    pub pg_addr: String,
}

/// Everything `sediment.toml` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// Directory with the PostgreSQL 15 binaries.
    pub pg_bin_dir: PathBuf,
    /// Ignored: older work directories named the OS user Postgres runs as
    /// here. It is one setting for every component now:
    /// `SEDIMENT_PG_OS_USER`, else `postgres` (see the `pgproc` crate).
    #[serde(default, rename = "pg_os_user", skip_serializing)]
    pub legacy_pg_os_user: Option<String>,
    /// The pageserver's addresses.
    pub pageserver: PageserverSettings,
    /// Tenant used when a command is given none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tenant: Option<String>,
    /// Branch names per tenant: tenant id → (branch name → timeline id).
    #[serde(default)]
    pub branches: BTreeMap<String, BTreeMap<String, String>>,
    /// Auth key and TLS CA (`init --auth` / `--tls`); absent: neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<crate::security::SecuritySettings>,
}

/// The work directory, with its config loaded.
#[derive(Debug)]
pub struct Workdir {
    /// Its path.
    pub path: PathBuf,
    /// The loaded config.
    pub config: CliConfig,
}

/// Resolves the work directory: `--workdir`, else `$SEDIMENT_WORKDIR`, else
/// `./.sediment` (clap fills in the environment variable).
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| PathBuf::from(".sediment"))
}

impl Workdir {
    /// Loads an initialised work directory.
    pub fn open(path: &Path) -> anyhow::Result<Workdir> {
        let file = path.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not initialised; run `sediment init` first",
                path.display()
            ),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", file.display()))
            }
        };
        let config = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid sediment config", file.display()))?;
        Ok(Workdir {
            path: path.to_path_buf(),
            config,
        })
    }

    /// Writes the config back (atomically: temp file, then rename).
    pub fn save(&self) -> anyhow::Result<()> {
        write_config(&self.path, &self.config)
    }

    /// The pageserver's work directory.
    pub fn pageserver_dir(&self) -> PathBuf {
        self.path.join("pageserver")
    }

    /// Directory of all endpoints.
    pub fn endpoints_dir(&self) -> PathBuf {
        self.path.join("endpoints")
    }

    /// Management API base URL.
    pub fn api_base(&self) -> String {
        let scheme = if crate::security::ca_file(self).is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.config.pageserver.http_addr)
    }

    /// The tenant to use: the given one, else the default.
    pub fn tenant(&self, given: Option<&str>) -> anyhow::Result<String> {
        match given.map(str::to_owned).or_else(|| self.config.default_tenant.clone()) {
            Some(id) => Ok(id),
            None => bail!("no tenant given and no default tenant; run `sediment tenant create --set-default` or pass --tenant-id"),
        }
    }

    /// Timeline id of a branch of a tenant.
    pub fn branch_timeline(&self, tenant: &str, branch: &str) -> anyhow::Result<String> {
        self.config
            .branches
            .get(tenant)
            .and_then(|names| names.get(branch))
            .cloned()
            .with_context(|| format!("tenant {tenant} has no branch named {branch:?}"))
    }
}

/// Writes `sediment.toml` into `dir`.
pub fn write_config(dir: &Path, config: &CliConfig) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(config).context("cannot encode the sediment config")?;
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

/// Replaces a file atomically and durably (`fileio::replace_file`: temp
/// file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fileio::replace_file(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
