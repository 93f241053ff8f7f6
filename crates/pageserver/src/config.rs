//! The daemon's configuration: `<workdir>/pageserver.toml` plus `-c key=value`
//! overrides from the command line.
//!
//! Every key is known in advance: an unknown key (a typo, or a setting from a
//! newer version) is an error at startup rather than a silently ignored line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use walreceiver::Placement;

use crate::tenant_config::TenantConfig;

/// Name of the config file inside the work directory.
pub const CONFIG_FILE_NAME: &str = "pageserver.toml";
/// Default management API address.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9898";
/// Default page service (Postgres wire protocol) address.
pub const DEFAULT_PG_ADDR: &str = "127.0.0.1:64000";
/// Where Debian installs the PostgreSQL 15 binaries.
pub const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Whether a listener requires a JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// No authentication (development only).
    #[default]
    None,
    /// A JWT signed by a key under `auth_validation_public_key_path`: a
    /// bearer token on the management API, the password on the page service.
    Jwt,
}

/// `disk_usage_based_eviction`: evict while the work directory's
/// filesystem is fuller than `max_usage_pct` or has less than
/// `min_avail_bytes` free, checked every `period`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUsageEviction {
    /// Highest allowed use of the filesystem, percent (0–100).
    pub max_usage_pct: u8,
    /// Least free space to keep, bytes.
    #[serde(default)]
    pub min_avail_bytes: u64,
    /// How often to check, e.g. `"10s"` (default 10 s).
    #[serde(default = "default_eviction_period")]
    pub period: String,
}

fn default_eviction_period() -> String {
    "10s".into()
}

impl DiskUsageEviction {
    /// The check period.
    pub fn period(&self) -> std::time::Duration {
        crate::tenant_config::parse_duration(&self.period)
            .filter(|d| !d.is_zero())
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_usage_pct > 100 {
            return Err(format!(
                "disk_usage_based_eviction.max_usage_pct {} is above 100",
                self.max_usage_pct
            ));
        }
        match crate::tenant_config::parse_duration(&self.period) {
            Some(d) if !d.is_zero() => Ok(()),
            _ => Err(format!(
                "disk_usage_based_eviction.period {:?} is not a positive duration",
                self.period
            )),
        }
    }
}

/// Settings of one pageserver process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PageServerConf {
    /// This node's id, reported by `GET /v1/status`.
    pub id: u64,
    /// Address of the management API (`host:port`; port 0 picks a free one).
    pub listen_http_addr: String,
    /// Address of the page service (`host:port`; port 0 picks a free one).
    pub listen_pg_addr: String,
    /// Directory holding `initdb` and friends (PostgreSQL 15).
    pub pg_bin_dir: PathBuf,
    /// Log line format.
    pub log_format: LogFormat,
    /// Defaults for every tenant; a tenant's own settings override these.
    pub tenant_config: TenantConfig,
    /// Remote storage: `s3://bucket/prefix`, a local directory, or `"none"`.
    /// Unset means the local directory `<workdir>/remote`.
    pub remote_storage: Option<String>,
    /// Background disk-usage eviction: keeps the filesystem of the work
    /// directory under a threshold by evicting the least recently used
    /// uploaded layers. Unset: eviction runs only through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_usage_based_eviction: Option<DiskUsageEviction>,
    /// Public keys (a PEM file or a directory of them, relative to the work
    /// directory) that JWTs are checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_validation_public_key_path: Option<PathBuf>,
    /// Authentication on the management API.
    pub http_auth_type: AuthType,
    /// Authentication on the page service.
    pub pg_auth_type: AuthType,
    /// TLS certificate chain (PEM); with `ssl_key_file`, both listeners
    /// speak TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_cert_file: Option<PathBuf>,
    /// TLS private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_key_file: Option<PathBuf>,
    /// Which CPUs the WAL streaming threads run on (they fsync the WAL that
    /// endpoints' commits wait for): `auto`, the CPUs that take the
    /// completion interrupts of the disk holding the WAL, when those are
    /// fewer than all (a single-queue virtio disk); `any`; or a CPU list
    /// such as `1` or `0-3,6`. A pinned thread runs in `SCHED_FIFO` where
    /// the process may. See `walreceiver::placement`.
    #[serde(with = "placement_setting")]
    pub wal_stream_cpus: Placement,
}

impl Default for PageServerConf {
    fn default() -> Self {
        PageServerConf {
            id: 1,
            listen_http_addr: DEFAULT_HTTP_ADDR.to_owned(),
            listen_pg_addr: DEFAULT_PG_ADDR.to_owned(),
            pg_bin_dir: PathBuf::from(DEFAULT_PG_BIN_DIR),
            log_format: LogFormat::Plain,
            tenant_config: TenantConfig::default(),
            remote_storage: None,
            disk_usage_based_eviction: None,
            auth_validation_public_key_path: None,
            http_auth_type: AuthType::None,
            pg_auth_type: AuthType::None,
            ssl_cert_file: None,
            ssl_key_file: None,
            wal_stream_cpus: Placement::default(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("{path} is not valid TOML: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: toml::de::Error,
    },
    /// A `-c` override is not of the form `key=value`.
    #[error("override {0:?} is not of the form key=value")]
    MalformedOverride(String),
    /// A dotted override key walks into something that is not a table.
    #[error("override key {0:?} does not name a setting")]
    BadOverrideKey(String),
    /// The merged settings are invalid (unknown key, wrong type, bad value).
    #[error("invalid pageserver configuration: {0}")]
    Invalid(String),
}

impl PageServerConf {
    /// The remote storage location, or `None` when it is switched off.
    pub fn remote_config(
        &self,
        workdir: &Path,
    ) -> Result<Option<remote_storage::RemoteConfig>, remote_storage::ConfigError> {
        match self.remote_storage.as_deref() {
            None => Ok(Some(remote_storage::RemoteConfig::Local(
                workdir.join("remote"),
            ))),
            Some("none") => Ok(None),
            Some(url) => remote_storage::RemoteConfig::parse(url).map(Some),
        }
    }

    /// Loads `<workdir>/pageserver.toml` (if present) and applies `overrides`
    /// (`key=value`, the value in TOML syntax or a bare string).
    pub fn load(workdir: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let path = workdir.join(CONFIG_FILE_NAME);
        let mut table = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .parse::<toml::Table>()
                .map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        Self::from_table(table)
    }

    /// Builds the settings from an already merged TOML table.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let conf: PageServerConf = toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| ConfigError::Invalid(error.message().to_owned()))?;
        conf.tenant_config
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("tenant_config: {error}")))?;
        if let Some(eviction) = &conf.disk_usage_based_eviction {
            eviction.validate().map_err(ConfigError::Invalid)?;
        }
        Ok(conf)
    }

    /// The settings as TOML text (what `sediment init` writes).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// Applies one `key=value` override; `a.b=v` sets key `b` of table `a`.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let (key, raw_value) = item
        .split_once('=')
        .ok_or_else(|| ConfigError::MalformedOverride(item.to_owned()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::MalformedOverride(item.to_owned()));
    }
    let value = parse_override_value(raw_value.trim());
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::BadOverrideKey(key.to_owned()))?;
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

/// `wal_stream_cpus` in TOML: its text (`"auto"`, `"any"`, `"0-3,6"`), or
/// one CPU's number as an integer (`wal_stream_cpus = 1`, which is also what
/// the override `-c wal_stream_cpus=1` reads as).
mod placement_setting {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use walreceiver::Placement;

    pub fn serialize<S: Serializer>(placement: &Placement, to: S) -> Result<S::Ok, S::Error> {
        to.collect_str(placement)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Placement, D::Error> {
        from.deserialize_any(PlacementVisitor)
    }

    struct PlacementVisitor;

    impl Visitor<'_> for PlacementVisitor {
        type Value = Placement;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "wal_stream_cpus: \"auto\", \"any\" or a CPU list such as \"1\" or \"0-3,6\"",
            )
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Placement, E> {
            text.parse()
                .map_err(|error| E::custom(format!("wal_stream_cpus: {error}")))
        }

        fn visit_i64<E: de::Error>(self, cpu: i64) -> Result<Placement, E> {
            self.visit_str(&cpu.to_string())
        }

        fn visit_u64<E: de::Error>(self, cpu: u64) -> Result<Placement, E> {
            self.visit_str(&cpu.to_string())
        }
    }
}

/// A value in TOML syntax (`5`, `true`, `"x"`), else the text itself as a
/// string so that `-c listen_http_addr=127.0.0.1:0` needs no quoting.
fn parse_override_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = PageServerConf::load(dir.path(), &[]).unwrap();
        assert_eq!(conf, PageServerConf::default());
        assert_eq!(conf.listen_http_addr, "127.0.0.1:9898");
        assert_eq!(conf.listen_pg_addr, "127.0.0.1:64000");
    }

    #[test]
    fn overrides_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "id = 7\nlisten_http_addr = '127.0.0.1:1'\n",
        )
        .unwrap();
        let overrides = [
            "listen_http_addr=127.0.0.1:0".to_owned(),
            "tenant_config.gc_horizon=1024".to_owned(),
            "log_format=\"json\"".to_owned(),
        ];
        let conf = PageServerConf::load(dir.path(), &overrides).unwrap();
        assert_eq!(conf.id, 7);
        assert_eq!(conf.listen_http_addr, "127.0.0.1:0");
        assert_eq!(conf.tenant_config.gc_horizon, Some(1024));
        assert_eq!(conf.log_format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let error = PageServerConf::load(dir.path(), &["no_such_key=1".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("no_such_key"), "{error}");
        let error =
            PageServerConf::load(dir.path(), &["tenant_config.bogus=1".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("bogus"), "{error}");
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), "typo_key = 1\n").unwrap();
        assert!(PageServerConf::load(dir.path(), &[]).is_err());
    }

    #[test]
    fn malformed_overrides_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["novalue", "=5", "id.x=1"] {
            assert!(
                PageServerConf::load(dir.path(), &[bad.to_owned()]).is_err(),
                "{bad}"
            );
        }
        // Wrong type for a known key.
        assert!(PageServerConf::load(dir.path(), &["id=abc".to_owned()]).is_err());
    }

    #[test]
    fn wal_stream_cpus_is_auto_any_or_a_cpu_list() {
        let dir = tempfile::tempdir().unwrap();
        let load =
            |value: &str| PageServerConf::load(dir.path(), &[format!("wal_stream_cpus={value}")]);
        assert_eq!(
            PageServerConf::default().wal_stream_cpus,
            Placement::NearDiskInterrupts
        );
        assert_eq!(load("any").unwrap().wal_stream_cpus, Placement::Anywhere);
        assert_eq!(
            load("0-1,3").unwrap().wal_stream_cpus,
            Placement::Cpus([0, 1, 3].into())
        );
        // One CPU reads as a TOML integer, in an override as in the file.
        assert_eq!(
            load("1").unwrap().wal_stream_cpus,
            Placement::Cpus([1].into())
        );
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), "wal_stream_cpus = 0\n").unwrap();
        let from_file = PageServerConf::load(dir.path(), &[]).unwrap();
        assert_eq!(from_file.wal_stream_cpus, Placement::Cpus([0].into()));
        // What `sediment init` writes reads back the same.
        let written = PageServerConf {
            wal_stream_cpus: Placement::Cpus([0, 2, 3].into()),
            ..PageServerConf::default()
        };
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), written.to_toml()).unwrap();
        assert_eq!(PageServerConf::load(dir.path(), &[]).unwrap(), written);
        std::fs::remove_file(dir.path().join(CONFIG_FILE_NAME)).unwrap();
        for bad in ["everywhere", "-1", "true", "1.5"] {
            let error = load(bad).unwrap_err();
            assert!(
                error.to_string().contains("wal_stream_cpus"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn written_config_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let conf = PageServerConf {
            id: 3,
            ..PageServerConf::default()
        };
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), conf.to_toml()).unwrap();
        assert_eq!(PageServerConf::load(dir.path(), &[]).unwrap(), conf);
    }
}
