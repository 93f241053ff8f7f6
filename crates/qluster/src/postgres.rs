//! Control of this node's PostgreSQL 15: initdb, start/stop, promote, base backup,
//! pg_rewind, and the settings file qluster owns (`qluster.conf`, included from
//! `postgresql.conf`).
//!
//! Postgres refuses to run as root, so when the daemon is root every program runs as the
//! OS user `pg-os-user` (default: `SEDIMENT_PG_OS_USER`, else `postgres`) through the
//! workspace's one helper, [`pgproc::RunAs`], on directories it owns.
//!
//! No `trust` (issue #14): qluster owns `pg_hba.conf`, where every TCP connection needs a
//! `scram-sha-256` password — the superuser `postgres`'s for clients, pg_rewind and the
//! daemon itself, [`REPLICATION_ROLE`]'s for streaming and base backups (the only role
//! allowed replication connections). Both passwords come from the config file and are
//! the same on every node; libpq programs (walreceiver, pg_basebackup, pg_rewind) read
//! them from a password file (`<data-dir>/secrets/pgpass`, 0600, owned by the OS user),
//! so they never appear in a command line or in `postgresql.conf`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::settings::Secret;

/// Name of the settings file qluster writes in the data directory.
const CONF_FILE: &str = "qluster.conf";

/// The role standbys stream and clone with (LOGIN REPLICATION, created by the first
/// primary).
pub const REPLICATION_ROLE: &str = "qluster_replication";

/// libpq's password file, in [`PgAuth::secrets_dir`].
const PASSFILE: &str = "pgpass";
/// The superuser password for initdb (`--pwfile`), removed once initdb ran.
const INITDB_PWFILE: &str = "initdb-password";

/// The whole `pg_hba.conf` of every node (earlier lines win). No `trust`: a TCP client
/// needs a password; `peer` for the OS user `postgres` on the Unix socket (which qluster
/// turns off, `unix_socket_directories = ''`) is the only way in without one.
const PG_HBA_CONF: &str = "\
# Written by qluster; changes are overwritten. Every TCP connection needs a
# scram-sha-256 password; replication connections only as qluster_replication.
local   all             postgres                                peer
host    replication     qluster_replication 0.0.0.0/0           scram-sha-256
host    replication     qluster_replication ::/0                scram-sha-256
host    all             all                 0.0.0.0/0           scram-sha-256
host    all             all                 ::/0                scram-sha-256
";

/// The passwords of the node's Postgres roles and where libpq programs find them.
#[derive(Debug, Clone)]
pub struct PgAuth {
    /// Password of the superuser `postgres`.
    pub superuser_password: Secret,
    /// Password of [`REPLICATION_ROLE`].
    pub replication_password: Secret,
    /// Directory (0700, owned by the OS user) of the password file. Outside the data
    /// directory: pg_rewind and pg_basebackup replace what is in there.
    pub secrets_dir: PathBuf,
}

/// Failures of a Postgres program.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} timed out")]
    Timeout { program: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("os user: {0}")]
    User(String),
    #[error("sql: {0}")]
    Sql(#[from] tokio_postgres::Error),
}

/// One node's Postgres installation and data directory.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    /// OS user to run as when we are root (`None`: run as ourselves).
    pub os_user: Option<String>,
    pub application_name: String,
    /// Server log. Kept outside the data directory: pg_rewind and pg_basebackup copy
    /// every file of the source's data directory, which would replace it.
    pub log_file: PathBuf,
    pub auth: PgAuth,
}

/// What the settings file should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    pub parameters: BTreeMap<String, String>,
    /// `host:port` to stream from (standby) or `None` (primary).
    pub primary: Option<(String, u16)>,
    pub synchronous_standbys: u32,
}

impl Postgres {
    fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// As whom Postgres programs run.
    fn run_as(&self) -> Result<pgproc::RunAs, PgError> {
        match &self.os_user {
            Some(user) => pgproc::RunAs::named(user).map_err(|e| PgError::User(e.to_string())),
            None => Ok(pgproc::RunAs::current_user()),
        }
    }

    /// Runs a Postgres program (as the OS user when we are root); returns its stdout
    /// followed by its stderr, or an error with its stderr when it fails.
    async fn run(&self, name: &str, args: &[&str], timeout: Duration) -> Result<String, PgError> {
        let program = self.program(name);
        let mut cmd = Command::from(self.run_as()?.command(&program));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| PgError::Timeout {
                program: name.to_string(),
            })??;
        if !out.status.success() {
            return Err(PgError::Failed {
                program: name.to_string(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // pg_rewind and friends report progress on stderr.
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    fn data(&self) -> &str {
        self.data_dir.to_str().unwrap_or_default()
    }

    /// Whether the data directory holds a cluster.
    pub fn has_data(&self) -> bool {
        self.data_dir.join("PG_VERSION").exists()
    }

    pub fn is_standby_configured(&self) -> bool {
        self.data_dir.join("standby.signal").exists()
    }

    /// Creates an empty data directory owned by the OS user, mode 0700.
    pub fn prepare_dir(&self) -> Result<(), PgError> {
        std::fs::create_dir_all(&self.data_dir)?;
        self.chown(&self.data_dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn chown(&self, path: &Path) -> Result<(), PgError> {
        self.run_as()?
            .chown(path)
            .map_err(|e| PgError::User(e.to_string()))
    }

    /// Removes the data directory entirely (before a re-clone).
    pub fn wipe(&self) -> Result<(), PgError> {
        match std::fs::remove_dir_all(&self.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a file into the secrets directory (created 0700 and owned by the OS user,
    /// so the atomic write's temporary file is never readable by anyone else), mode 0600,
    /// owned by the OS user. Returns its path.
    fn write_secret_file(&self, name: &str, text: &str) -> Result<PathBuf, PgError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &self.auth.secrets_dir;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        self.chown(dir)?;
        let path = fileio::write_atomic(&fileio::StdFileIo, dir, name, text.as_bytes())?;
        // libpq ignores a password file that others may read.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        self.chown(&path)?;
        Ok(path)
    }

    fn passfile(&self) -> PathBuf {
        self.auth.secrets_dir.join(PASSFILE)
    }

    /// Writes libpq's password file with both passwords (at every daemon start, so a
    /// changed config applies to every later connection).
    pub fn install_passfile(&self) -> Result<(), PgError> {
        let text = passfile_text(
            self.auth.superuser_password.expose(),
            self.auth.replication_password.expose(),
        );
        self.write_secret_file(PASSFILE, &text).map(|_| ())
    }

    /// A libpq connection string to `host:port` as `user`, passwords from the password
    /// file.
    fn conninfo(&self, host: &str, port: u16, user: &str) -> String {
        format!(
            "host={} port={port} user={} passfile={}",
            conninfo_quote(host),
            conninfo_quote(user),
            conninfo_quote(&self.passfile().to_string_lossy()),
        )
    }

    /// The daemon's own connections (tokio-postgres reads no password file), as the
    /// superuser.
    fn client_config(&self, host: &str, port: u16, timeout: Duration) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .user("postgres")
            .password(self.auth.superuser_password.expose())
            .dbname("postgres")
            .connect_timeout(timeout);
        config
    }

    /// `initdb` with checksums (pg_rewind needs them or wal_log_hints) and password
    /// authentication: the superuser's password from a file (removed again), `peer` on
    /// the Unix socket and `scram-sha-256` over TCP until [`PG_HBA_CONF`] replaces it.
    pub async fn initdb(&self) -> Result<(), PgError> {
        self.prepare_dir()?;
        let pwfile = self.write_secret_file(
            INITDB_PWFILE,
            &format!("{}\n", self.auth.superuser_password.expose()),
        )?;
        let pwfile_arg = format!("--pwfile={}", pwfile.to_string_lossy());
        let result = self
            .run(
                "initdb",
                &[
                    "-D",
                    self.data(),
                    "-U",
                    "postgres",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    &pwfile_arg,
                    "--data-checksums",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                Duration::from_secs(120),
            )
            .await;
        let removed = std::fs::remove_file(&pwfile);
        result?;
        removed?;
        self.install_conf_hooks().map(|_| ())
    }

    /// Makes `postgresql.conf` include our file and writes our `pg_hba.conf` (also over
    /// one a base backup or rewind copied, or an older qluster wrote with `trust`).
    /// Returns whether `pg_hba.conf` changed (a running server must reload it).
    fn install_conf_hooks(&self) -> Result<bool, PgError> {
        let conf = self.data_dir.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf)?;
        let include = format!("include_if_exists = '{CONF_FILE}'");
        if !text.contains(&include) {
            std::fs::write(&conf, format!("{text}\n{include}\n"))?;
        }
        let hba = self.data_dir.join("pg_hba.conf");
        if std::fs::read_to_string(&hba).ok().as_deref() == Some(PG_HBA_CONF) {
            return Ok(false);
        }
        std::fs::write(&hba, PG_HBA_CONF)?;
        self.chown(&hba)?;
        Ok(true)
    }

    /// Creates [`REPLICATION_ROLE`] unless it exists, on a just-initialized primary. The
    /// password is sent as a SCRAM verifier computed here, never in clear. The commit is
    /// local: standbys need the role to clone, so it must not wait for one of them.
    pub async fn create_replication_role(&self) -> Result<(), PgError> {
        let verifier = postgres_protocol::password::scram_sha_256(
            self.auth.replication_password.expose().as_bytes(),
        );
        let client = self.connect().await?;
        client
            .batch_execute("SET synchronous_commit = local")
            .await?;
        // The verifier is base64 and `$:=` only: nothing to escape in the literal.
        client
            .batch_execute(&format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = \
                 '{REPLICATION_ROLE}') THEN CREATE ROLE {REPLICATION_ROLE} LOGIN REPLICATION \
                 PASSWORD '{verifier}'; END IF; END$$"
            ))
            .await?;
        Ok(())
    }

    /// Writes `qluster.conf` (and `standby.signal` for a standby). Returns whether the
    /// file (or `pg_hba.conf`) changed.
    pub fn write_settings(&self, s: &PgSettings) -> Result<bool, PgError> {
        let hba_changed = self.install_conf_hooks()?;
        let mut text = String::from("# Written by qluster; changes are overwritten.\n");
        for (k, v) in &s.parameters {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push_str(&format!("port = {}\n", self.port));
        text.push_str("unix_socket_directories = ''\n");
        text.push_str("recovery_target_timeline = 'latest'\n");
        match &s.primary {
            Some((host, port)) => {
                let conninfo = format!(
                    "{} application_name={} connect_timeout=2",
                    self.conninfo(host, *port, REPLICATION_ROLE),
                    conninfo_quote(&self.application_name)
                );
                text.push_str(&format!("primary_conninfo = {}\n", conf_quote(&conninfo)));
                text.push_str("synchronous_standby_names = ''\n");
            }
            None => {
                text.push_str("primary_conninfo = ''\n");
                let names = match s.synchronous_standbys {
                    0 => String::new(),
                    k => format!("ANY {k} (*)"),
                };
                text.push_str(&format!("synchronous_standby_names = '{names}'\n"));
            }
        }
        let path = self.data_dir.join(CONF_FILE);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let signal = self.data_dir.join("standby.signal");
        if s.primary.is_some() && !signal.exists() {
            std::fs::write(&signal, b"")?;
            self.chown(&signal)?;
        }
        if old == text {
            return Ok(hba_changed);
        }
        std::fs::write(&path, &text)?;
        self.chown(&path)?;
        Ok(true)
    }

    fn pid_file(&self) -> PathBuf {
        self.data_dir.join("postmaster.pid")
    }

    /// The postmaster running on this data directory, if any.
    ///
    /// `postmaster.pid` outlives a `kill -9`, and on a busy host its PID is soon reused
    /// by an unrelated process. A PID counts only while that process's working directory
    /// is this data directory (a postmaster changes into it before writing the file), so
    /// a stranger is never signalled nor taken for our server.
    pub fn running_postmaster(&self) -> Option<nix::unistd::Pid> {
        postmaster_of(&self.data_dir)
    }

    /// Removes a `postmaster.pid` left by a killed server. Postgres itself refuses to
    /// start while the PID in it is alive, which after PID reuse it may be.
    fn remove_stale_pid_file(&self) -> Result<(), PgError> {
        if self.running_postmaster().is_some() {
            return Ok(());
        }
        match std::fs::remove_file(self.pid_file()) {
            Ok(()) => {
                tracing::info!("removed stale {}", self.pid_file().display());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the data directory as a standby (before starting a former primary).
    pub fn mark_standby(&self) -> Result<(), PgError> {
        let signal = self.data_dir.join("standby.signal");
        std::fs::write(&signal, b"")?;
        self.chown(&signal)
    }

    pub async fn start(&self) -> Result<(), PgError> {
        self.remove_stale_pid_file()?;
        // The log is opened by pg_ctl as the OS user: create it as ours first.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)?;
        self.chown(&self.log_file)?;
        let log = self.log_file.to_str().unwrap_or("postgres.log").to_string();
        self.run(
            "pg_ctl",
            &["-D", self.data(), "-l", &log, "-w", "-t", "120", "start"],
            Duration::from_secs(130),
        )
        .await
        .map(|_| ())
    }

    /// Stops at once (`immediate`: no checkpoint) — used for fencing a former primary.
    pub async fn stop_immediate(&self) -> Result<(), PgError> {
        if self.running_postmaster().is_none() {
            // pg_ctl would signal whatever process now has the stale PID.
            return self.remove_stale_pid_file();
        }
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            Duration::from_secs(35),
        )
        .await
        .map(|_| ())
    }

    pub async fn reload(&self) -> Result<(), PgError> {
        if self.running_postmaster().is_none() {
            return Ok(()); // the new settings apply at the next start
        }
        self.run(
            "pg_ctl",
            &["-D", self.data(), "reload"],
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
    }

    pub async fn promote(&self) -> Result<(), PgError> {
        self.run(
            "pg_ctl",
            &["-D", self.data(), "-w", "-t", "60", "promote"],
            Duration::from_secs(65),
        )
        .await
        .map(|_| ())
    }

    /// Clones the primary into an empty data directory.
    pub async fn base_backup(&self, host: &str, port: u16) -> Result<(), PgError> {
        self.wipe()?;
        self.prepare_dir()?;
        let source = self.conninfo(host, port, REPLICATION_ROLE);
        self.run(
            "pg_basebackup",
            &[
                "-d",
                &source,
                "-D",
                self.data(),
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            Duration::from_secs(600),
        )
        .await?;
        self.install_conf_hooks().map(|_| ())
    }

    /// Makes the rewind source's control file name its current timeline.
    ///
    /// pg_rewind takes the source's timeline from its last checkpoint. A primary
    /// promoted moments ago has only requested its end-of-recovery checkpoint (a spread
    /// one, which can take minutes), so its control file still names the old timeline:
    /// pg_rewind would then say "no rewind required" and leave a diverged standby that
    /// can never stream. So force that checkpoint first.
    pub async fn checkpoint_source(&self, host: &str, port: u16) -> Result<(), PgError> {
        checkpoint(&self.client_config(host, port, Duration::from_secs(5))).await
    }

    /// Rewinds a former primary onto the current primary's timeline (call
    /// [`Postgres::checkpoint_source`] first). Returns false when pg_rewind found
    /// nothing to do (both on one timeline).
    pub async fn rewind(&self, host: &str, port: u16) -> Result<bool, PgError> {
        let source = format!("{} dbname=postgres", self.conninfo(host, port, "postgres"));
        self.remove_stale_pid_file()?;
        // pg_rewind finishes crash recovery in single-user mode, which refuses standby
        // mode: drop the signal file first (the caller writes it again).
        for signal in ["standby.signal", "recovery.signal"] {
            match std::fs::remove_file(self.data_dir.join(signal)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        let out = self
            .run(
                "pg_rewind",
                &["-D", self.data(), "--source-server", &source],
                Duration::from_secs(600),
            )
            .await?;
        // Its own lines (divergence point, "Done!" / "no rewind required"), without
        // the single-user crash recovery's chatter.
        let summary: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("pg_rewind: "))
            .collect();
        tracing::info!("pg_rewind: {}", summary.join(" | "));
        Ok(!summary.iter().any(|l| l.contains("no rewind required")))
    }

    /// A connection to the local database.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let (client, conn) = self
            .client_config("127.0.0.1", self.port, Duration::from_secs(2))
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

/// The postmaster running on `data_dir`, if any: the PID in `postmaster.pid`, counted
/// only while that process's working directory is `data_dir` (see
/// [`Postgres::running_postmaster`]).
pub fn postmaster_of(data_dir: &Path) -> Option<nix::unistd::Pid> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid = text.lines().next()?.trim().parse::<i32>().ok()?;
    if pid <= 0 {
        return None;
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let ours = std::fs::canonicalize(data_dir).ok()?;
    (cwd == ours).then(|| nix::unistd::Pid::from_raw(pid))
}

/// Whether `data_dir` runs a server that may accept writes: a live postmaster without
/// `standby.signal` (Postgres removes the file before a promoted server takes writes).
pub fn primary_running(data_dir: &Path) -> Option<nix::unistd::Pid> {
    let pid = postmaster_of(data_dir)?;
    (!data_dir.join("standby.signal").exists()).then_some(pid)
}

/// Kills a postmaster and every process it forked with SIGKILL, so no backend can
/// acknowledge one more commit. Postgres children each start their own session, so a
/// process-group kill would miss them: the postmaster is frozen first (it cannot fork
/// or restart children), its children found through `/proc` and killed, then itself.
pub fn kill_postmaster_tree(pid: nix::unistd::Pid) {
    use nix::sys::signal::{kill, Signal};
    let _ = kill(pid, Signal::SIGSTOP);
    for child in children_of(pid.as_raw()) {
        let _ = kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL);
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// PIDs whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // The parent PID is the second field after the parenthesised command name.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|f| f.parse::<i32>().ok());
            ppid == Some(pid)
        })
        .collect()
}

/// A value for a libpq connection string: as it is when it needs no quotes, else
/// quoted with `\\` and `'` escaped.
fn conninfo_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A string literal for `postgresql.conf` (`\\` escapes, `''` for a quote).
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// libpq's password file: both roles, any host, port and database (`replication`
/// included); `\\` and `:` escaped as the format wants.
fn passfile_text(superuser: &str, replication: &str) -> String {
    let field = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "*:*:*:postgres:{}\n*:*:*:{REPLICATION_ROLE}:{}\n",
        field(superuser),
        field(replication)
    )
}

/// Runs `CHECKPOINT` on a server and waits for it.
async fn checkpoint(config: &tokio_postgres::Config) -> Result<(), PgError> {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(Duration::from_secs(120), client.batch_execute("CHECKPOINT"))
        .await
        .map_err(|_| PgError::Timeout {
            program: "CHECKPOINT".into(),
        })??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_has_no_trust_line() {
        let rules: Vec<&str> = PG_HBA_CONF
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert!(!rules.is_empty());
        for line in rules {
            let method = line.split_whitespace().last().unwrap_or_default();
            assert!(method == "scram-sha-256" || method == "peer", "{line}");
        }
        assert!(!PG_HBA_CONF.contains("trust"));
    }

    #[test]
    fn quoting() {
        assert_eq!(conninfo_quote(r"/a b/it's\x"), r"'/a b/it\'s\\x'");
        assert_eq!(conninfo_quote("/var/lib/q/pgpass"), "/var/lib/q/pgpass");
        assert_eq!(conninfo_quote(""), "''");
        assert_eq!(conf_quote(r"user='x' p=\y"), r"'user=''x'' p=\\y'");
        assert_eq!(
            passfile_text(r"a:b\c", "plain"),
            "*:*:*:postgres:a\\:b\\\\c\n*:*:*:qluster_replication:plain\n"
        );
    }
}
