//! A throwaway PostgreSQL 15 cluster: initdb into a temp dir, start on a free
//! port with its Unix socket inside that dir, run SQL and pgbench through the
//! real client binaries, stop and delete everything on drop.
//!
//! ```no_run
//! let cluster = testkit::PgCluster::builder()
//!     .setting("wal_compression", "lz4")
//!     .initdb_args(&["--wal-segsize=1"])
//!     .start()?;
//! cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")?;
//! let n: i64 = cluster.query_scalar("SELECT count(*) FROM t")?;
//! assert_eq!(n, 1);
//! # Ok::<(), testkit::Error>(())
//! ```

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::install::{run_capture, PgInstall};
use crate::reaper::Reaper;
use crate::tempdir::{free_port, PgTempDir};

/// The database superuser initdb creates (independent of the OS user).
pub const SUPERUSER: &str = "postgres";
/// How many ports a start tries before giving up.
const START_ATTEMPTS: u32 = 5;
/// `pg_ctl -t`: generous, the CI machine is shared.
const PG_CTL_TIMEOUT_SECS: &str = "120";

/// Configures a cluster before `initdb`; see [`PgCluster::builder`].
#[derive(Debug, Clone, Default)]
pub struct PgClusterBuilder {
    settings: Vec<(String, String)>,
    initdb_args: Vec<String>,
    port: Option<u16>,
}

impl PgClusterBuilder {
    /// Appends `name = 'value'` to postgresql.conf (later settings win).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Appends several settings, in order.
    pub fn settings(mut self, settings: &[(&str, &str)]) -> Self {
        for (name, value) in settings {
            self = self.setting(name, value);
        }
        self
    }

    /// Adds one `initdb` argument, e.g. `--wal-segsize=1`.
    pub fn initdb_arg(mut self, arg: &str) -> Self {
        self.initdb_args.push(arg.to_owned());
        self
    }

    /// Adds several `initdb` arguments.
    pub fn initdb_args(mut self, args: &[&str]) -> Self {
        for arg in args {
            self = self.initdb_arg(arg);
        }
        self
    }

    /// Asks for a specific port; if it is taken at start, another free one
    /// is used instead (check [`PgCluster::port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Keeps every WAL segment since initdb (huge `wal_keep_size`), so that
    /// [`PgCluster::collect_wal`] returns the complete history.
    pub fn retain_all_wal(self) -> Self {
        self.setting("wal_keep_size", "1TB")
    }

    /// Runs initdb and writes the configuration, without starting the server.
    pub fn init(self) -> Result<PgCluster> {
        let install = PgInstall::detect()?;
        let root = PgTempDir::new_for(&install)?;
        let socket_dir = root.subdir(&install, "sock")?;
        check_socket_path_length(&socket_dir)?;
        let data_dir = root.path().join("data");
        let mut initdb = install.command("initdb");
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"])
            .args(&self.initdb_args);
        run_capture(&mut initdb, None)?;
        self.configure(install, root, data_dir, socket_dir)
    }

    /// Takes over an existing data directory instead of running initdb — a
    /// `pg_basebackup` or a base backup a pageserver produced — placed at
    /// `root/data_dir_name`. Gives the whole tree to the Postgres user (mode
    /// 0700 on the data dir, as the server demands) and appends the
    /// harness's settings to its postgresql.conf. Not started.
    pub fn adopt(self, root: PgTempDir, data_dir_name: &str) -> Result<PgCluster> {
        let install = PgInstall::detect()?;
        let data_dir = root.path().join(data_dir_name);
        install.chown_recursive(&data_dir)?;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("chmod 0700", &data_dir, e))?;
        let socket_dir = root.subdir(&install, "sock")?;
        check_socket_path_length(&socket_dir)?;
        // A standby.signal or recovery settings from the source stay as they
        // are: the caller decides what kind of server this is.
        self.configure(install, root, data_dir, socket_dir)
    }

    fn configure(
        self,
        install: PgInstall,
        root: PgTempDir,
        data_dir: PathBuf,
        socket_dir: PathBuf,
    ) -> Result<PgCluster> {
        let reaper = Reaper::spawn(
            &data_dir.join("postmaster.pid"),
            root.path(),
            crate::tempdir::keep_tmp(),
        )?;
        let mut cluster = PgCluster {
            reaper,
            log_file: root.path().join("postgres.log"),
            install,
            data_dir,
            socket_dir,
            port: 0,
            running: false,
            root,
        };
        cluster.write_base_config(&self.settings)?;
        if let Some(port) = self.port {
            cluster.set_port(port)?;
        }
        Ok(cluster)
    }

    /// initdb + start.
    pub fn start(self) -> Result<PgCluster> {
        let mut cluster = self.init()?;
        cluster.start()?;
        Ok(cluster)
    }
}

/// A running (or stopped) temporary PostgreSQL 15 cluster. Dropping it stops
/// the server immediately and deletes its directory.
#[derive(Debug)]
pub struct PgCluster {
    install: PgInstall,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    running: bool,
    reaper: Reaper,
    // Last field: dropped after the server is stopped in `Drop`.
    root: PgTempDir,
}

impl PgCluster {
    /// A builder for settings and initdb arguments.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// A started cluster with default settings.
    pub fn start_default() -> Result<PgCluster> {
        Self::builder().start()
    }

    /// TCP port (on 127.0.0.1) and Unix-socket port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temp dir holding data dir, socket dir and log; owned by the
    /// Postgres user. Put extra directories (tablespaces, archives) here.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// Creates a directory under [`PgCluster::root_dir`] owned by the
    /// Postgres user (for tablespaces, archive dirs, …).
    pub fn make_dir(&self, name: &str) -> Result<PathBuf> {
        self.root.subdir(&self.install, name)
    }

    /// The server log file (`pg_ctl -l`).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The installation (binaries, OS user) this cluster runs with.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// Full path of a PostgreSQL binary, e.g. `bin("pg_waldump")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.install.bin(name)
    }

    /// Whether the server is (as far as we know) running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// libpq keyword connection string over the Unix socket to database
    /// `postgres`, usable by psql, pg_basebackup and tokio-postgres.
    pub fn connstr(&self) -> String {
        self.connstr_db("postgres")
    }

    /// Like [`PgCluster::connstr`] for another database.
    pub fn connstr_db(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={dbname}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// libpq keyword connection string over TCP to 127.0.0.1.
    pub fn tcp_connstr(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname=postgres",
            self.port
        )
    }

    /// A command for a PostgreSQL binary running as the Postgres user, with
    /// `PGHOST`/`PGPORT`/`PGUSER`/`PGDATABASE` pointing at this cluster.
    pub fn command(&self, name: &str) -> Command {
        let mut command = self.install.command(name);
        command
            .env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", SUPERUSER)
            .env("PGDATABASE", "postgres")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        command
    }

    /// Starts the server (`pg_ctl -w start`). If the port was taken meanwhile,
    /// picks another and retries.
    pub fn start(&mut self) -> Result<()> {
        if self.port == 0 {
            self.set_port(free_port()?)?;
        }
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            // Only this attempt's log lines count: an earlier attempt's
            // "could not bind" must not hide a different failure now.
            let log_offset = self.log_len();
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.running = true;
                    return Ok(());
                }
                Err(error) if self.log_says_port_taken(log_offset) => {
                    last = Some(error);
                    self.set_port(free_port()?)?;
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::NoFreePort {
            attempts: START_ATTEMPTS,
            last: Box::new(last.unwrap_or_else(|| Error::NotRunning {
                data_dir: self.data_dir.clone(),
            })),
        })
    }

    /// Fast shutdown (`pg_ctl -m fast -w stop`): a clean shutdown checkpoint.
    pub fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Immediate shutdown: no checkpoint, like a crash (recovery on restart).
    pub fn stop_immediate(&mut self) -> Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// `pg_basebackup -X stream --checkpoint=fast` of this cluster into
    /// `root/name` (a plain-format data directory); pair with
    /// [`PgClusterBuilder::adopt`] to start a copy.
    pub fn basebackup(&self, root: &PgTempDir, name: &str) -> Result<PathBuf> {
        self.ensure_running()?;
        let target = root.path().join(name);
        let mut command = self.command("pg_basebackup");
        command
            .arg("-D")
            .arg(&target)
            .args(["-X", "stream", "--checkpoint=fast", "--no-sync"]);
        run_capture(&mut command, None)?;
        Ok(target)
    }

    /// Fast stop, then start (same port unless it was taken meanwhile).
    pub fn restart(&mut self) -> Result<()> {
        if self.running {
            self.stop()?;
        }
        self.start()
    }

    /// Runs `sql` (one or many `;`-separated statements, fed on stdin so that
    /// `CREATE DATABASE` and `COPY … FROM STDIN` work) in database
    /// `postgres` and returns the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db("postgres", sql)
    }

    /// Like [`PgCluster::psql`] in database `dbname`.
    pub fn psql_db(&self, dbname: &str, sql: &str) -> Result<String> {
        self.ensure_running()?;
        let mut psql = self.command("psql");
        psql.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .args(["-d", dbname]);
        run_capture(&mut psql, Some(sql.as_bytes()))
    }

    /// Gives the superuser `password` and returns the TCP connection string
    /// carrying it. Base backups Sediment serves let TCP clients in with a
    /// password only (no `trust`), and nobody has one yet. Committed with
    /// `synchronous_commit = local`: it works on a primary whose synchronous
    /// standby (the pageserver) is not connected yet.
    pub fn set_superuser_password(&self, password: &str) -> Result<String> {
        let quoted = password.replace('\'', "''");
        self.psql(&format!(
            "SET synchronous_commit = local; ALTER ROLE {SUPERUSER} PASSWORD '{quoted}'"
        ))?;
        Ok(format!(
            "{} password='{}'",
            self.tcp_connstr(),
            password.replace('\\', "\\\\").replace('\'', "\\'")
        ))
    }

    /// Runs a query returning one value and parses it (`i64`, `String`,
    /// `Lsn`, …).
    pub fn query_scalar<T: FromStr>(&self, sql: &str) -> Result<T> {
        self.query_scalar_db("postgres", sql)
    }

    /// Like [`PgCluster::query_scalar`] in database `dbname`.
    pub fn query_scalar_db<T: FromStr>(&self, dbname: &str, sql: &str) -> Result<T> {
        let output = self.psql_db(dbname, sql)?;
        let value = output.strip_suffix('\n').unwrap_or(&output);
        if value.contains('\n') {
            return Err(Error::UnexpectedOutput {
                what: format!("query_scalar({sql:?}): more than one row"),
                output,
            });
        }
        // psql prints booleans as t/f, which `bool::from_str` rejects.
        let value = match value {
            "t" => "true",
            "f" => "false",
            other => other,
        };
        value.parse().map_err(|_| Error::UnexpectedOutput {
            what: format!(
                "query_scalar({sql:?}): not a {}",
                std::any::type_name::<T>()
            ),
            output: output.clone(),
        })
    }

    /// Runs `pgbench ARGS` against this cluster (database `postgres` unless
    /// the args name one) and returns its stdout.
    pub fn pgbench(&self, args: &[&str]) -> Result<String> {
        self.ensure_running()?;
        run_capture(self.command("pgbench").args(args), None)
    }

    /// Runs a pgbench benchmark and returns its reported transactions/second.
    pub fn pgbench_tps(&self, args: &[&str]) -> Result<f64> {
        let output = self.pgbench(args)?;
        crate::pgbench::parse_tps(&output).ok_or(Error::UnexpectedOutput {
            what: "pgbench (no tps line)".to_owned(),
            output,
        })
    }

    fn ensure_running(&self) -> Result<()> {
        if self.running {
            Ok(())
        } else {
            Err(Error::NotRunning {
                data_dir: self.data_dir.clone(),
            })
        }
    }

    /// Appends the harness's block of settings, then the caller's.
    fn write_base_config(&mut self, settings: &[(String, String)]) -> Result<()> {
        let socket_dir = self.socket_dir.display().to_string();
        let mut text = String::from("\n# --- testkit ---\n");
        let base = [
            ("listen_addresses", "127.0.0.1"),
            ("unix_socket_directories", socket_dir.as_str()),
            // WAL content does not depend on fsync; the shared CI disk does.
            ("fsync", "off"),
            ("log_line_prefix", "%m [%p] "),
        ];
        for (name, value) in base {
            append_setting(&mut text, name, value);
        }
        for (name, value) in settings {
            append_setting(&mut text, name, value);
        }
        self.append_config(&text)
    }

    fn set_port(&mut self, port: u16) -> Result<()> {
        self.port = port;
        let mut text = String::new();
        append_setting(&mut text, "port", &port.to_string());
        self.append_config(&text)
    }

    /// Appends raw lines to postgresql.conf (takes effect on next start or
    /// `SELECT pg_reload_conf()`).
    pub fn append_config(&self, text: &str) -> Result<()> {
        use std::io::Write;
        let path = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io("append to", &path, e))
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let mut pg_ctl = self.install.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"]);
        run_capture(&mut pg_ctl, None).map_err(|error| self.with_log_tail(error))?;
        Ok(())
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        let mut pg_ctl = self.install.command("pg_ctl");
        pg_ctl.arg("-D").arg(&self.data_dir).args([
            "-m",
            mode,
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "stop",
        ]);
        run_capture(&mut pg_ctl, None).map_err(|error| self.with_log_tail(error))?;
        self.running = false;
        Ok(())
    }

    /// Adds the end of the server log to a failed pg_ctl's stderr: pg_ctl
    /// itself only says "could not start server".
    fn with_log_tail(&self, error: Error) -> Error {
        match error {
            Error::CommandFailed {
                command,
                status,
                stderr,
            } => Error::CommandFailed {
                command,
                status,
                stderr: format!("{stderr}\n--- server log tail ---\n{}", self.log_tail(30)),
            },
            other => other,
        }
    }

    /// The last `lines` lines of the server log (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_file).map_or(0, |m| m.len())
    }

    fn log_says_port_taken(&self, since: u64) -> bool {
        let text = std::fs::read(&self.log_file).unwrap_or_default();
        let start = usize::try_from(since).unwrap_or(usize::MAX).min(text.len());
        let new = String::from_utf8_lossy(&text[start..]);
        new.contains("could not bind") || new.contains("could not create any TCP/IP sockets")
    }

    /// Last resort when `pg_ctl stop` fails in drop: SIGKILL the postmaster
    /// named in postmaster.pid so no server outlives the test.
    fn kill_postmaster(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(pid_file) else {
            return;
        };
        if let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.reaper.disarm();
        if self.running && self.stop_immediate().is_err() {
            self.kill_postmaster();
        }
        if crate::tempdir::keep_tmp() {
            eprintln!(
                "cluster data dir: {} (log {})",
                self.data_dir.display(),
                self.log_file.display()
            );
        }
    }
}

fn append_setting(text: &mut String, name: &str, value: &str) {
    // postgresql.conf strings treat backslash as an escape and '' as a quote.
    let quoted = value.replace('\\', "\\\\").replace('\'', "''");
    let _ = writeln!(text, "{name} = '{quoted}'");
}

/// Unix socket paths are limited to 107 bytes; a long `$TMPDIR` would give
/// an obscure server error, so say it plainly.
fn check_socket_path_length(socket_dir: &Path) -> Result<()> {
    // "/.s.PGSQL.65535" plus the terminating NUL.
    let length = socket_dir.as_os_str().len() + 16;
    if length > 107 {
        return Err(Error::io(
            "socket dir path too long (set TMPDIR shorter)",
            socket_dir,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    Ok(())
}
