//! Where the PostgreSQL 15 binaries are, and which OS user runs them.
//!
//! Postgres refuses to run as root, and CI runs as root: every server-side
//! binary (`initdb`, `pg_ctl`, `postgres`) — and, for uniformity, the client
//! tools too — is started through [`PgInstall::command`], which drops to the
//! unprivileged user (`postgres`, or `SEDIMENT_PG_OS_USER`) when we are root,
//! through the workspace's one helper for that, [`pgproc::RunAs`].

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Environment variable naming the directory of the PostgreSQL 15 binaries.
pub const PG_BIN_ENV: &str = "SEDIMENT_PG_BIN";
/// Environment variable naming the OS user to run Postgres as when we are
/// root (the one setting, owned by [`pgproc`]).
pub use pgproc::OS_USER_ENV as PG_OS_USER_ENV;
/// Where Debian installs PostgreSQL 15.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// An unprivileged OS user the Postgres processes run as.
pub use pgproc::OsUser;

/// A located PostgreSQL 15 installation plus the user that runs it.
#[derive(Debug, Clone)]
pub struct PgInstall {
    bin_dir: PathBuf,
    run_as: pgproc::RunAs,
}

impl PgInstall {
    /// Finds the binaries (`SEDIMENT_PG_BIN`, else Debian's path), checks that
    /// `postgres --version` is 15.x, and resolves the OS user. The answer is
    /// computed once per process.
    pub fn detect() -> Result<PgInstall> {
        static DETECTED: OnceLock<Result<PgInstall, String>> = OnceLock::new();
        DETECTED
            .get_or_init(|| Self::detect_uncached().map_err(|e| e.to_string()))
            .clone()
            .map_err(|reason| Error::BinariesNotFound { reason })
    }

    fn detect_uncached() -> Result<PgInstall> {
        let bin_dir = std::env::var_os(PG_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN));
        let postgres = bin_dir.join("postgres");
        if !postgres.is_file() {
            return Err(Error::BinariesNotFound {
                reason: format!("{} does not exist", postgres.display()),
            });
        }
        let version = run_capture(Command::new(&postgres).arg("--version"), None)?;
        // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
        let major = version
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next());
        if major != Some("15") {
            return Err(Error::BinariesNotFound {
                reason: format!(
                    "{} reports {:?}, need 15.x",
                    postgres.display(),
                    version.trim()
                ),
            });
        }
        Ok(PgInstall {
            bin_dir,
            run_as: pgproc::RunAs::detect()?,
        })
    }

    /// Directory holding the binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Full path of one binary, e.g. `bin("pg_waldump")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The user Postgres runs as, or `None` when that is the current user.
    pub fn run_as(&self) -> Option<&OsUser> {
        self.run_as.switch_to()
    }

    /// Gives `path` to the Postgres user (no-op when not root).
    pub fn chown(&self, path: &Path) -> Result<()> {
        Ok(self.run_as.chown(path)?)
    }

    /// Gives `path` and everything below it to the Postgres user (no-op when
    /// not root). Symbolic links are changed themselves, never followed.
    pub fn chown_recursive(&self, path: &Path) -> Result<()> {
        Ok(self.run_as.chown_recursive(path)?)
    }

    /// A `Command` for binary `name`, already set to run as the Postgres user,
    /// with a working directory that user can enter.
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin(name));
        // The test's own cwd may be unreadable to the postgres user, and
        // initdb/pg_ctl resolve their own path relative to it.
        command.current_dir("/");
        self.run_as.apply(&mut command);
        command
    }
}

/// Runs `command` to completion, feeding it `stdin`, and returns its stdout.
/// A non-zero exit becomes [`Error::CommandFailed`] carrying stderr.
pub fn run_capture(command: &mut Command, stdin: Option<&[u8]>) -> Result<String> {
    let (stdout, _stderr) = run_capture_both(command, stdin)?;
    Ok(stdout)
}

/// Like [`run_capture`] but returns `(stdout, stderr)`.
pub fn run_capture_both(command: &mut Command, stdin: Option<&[u8]>) -> Result<(String, String)> {
    run_capture_within(command, stdin, command_timeout())
}

/// Like [`run_capture_both`] with an explicit timeout instead of
/// `SEDIMENT_COMMAND_TIMEOUT_SECS`.
pub fn run_capture_within(
    command: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<(String, String)> {
    let description = describe(command);
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        command: description.clone(),
        source,
    })?;
    // Feed stdin from a thread: a child that fills its stdout pipe before
    // reading all input would otherwise deadlock against us.
    let writer = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            Some(std::thread::spawn(move || pipe.write_all(&input)))
        }
        _ => None,
    };
    let output = wait_with_deadline(child, &description, timeout)?;
    // A write error (EPIPE) only matters if the child also failed, and then
    // its stderr says why; so the writer's own result is not reported.
    if let Some(handle) = writer {
        let _ = handle.join();
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: description,
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok((stdout, stderr))
}

/// Environment variable: seconds any single harness command (psql,
/// pgbench, pg_ctl, …) may run before it is killed; default 900.
pub const COMMAND_TIMEOUT_ENV: &str = "SEDIMENT_COMMAND_TIMEOUT_SECS";
const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 900;

fn command_timeout() -> Duration {
    let secs = std::env::var(COMMAND_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_COMMAND_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

/// Waits for the child and collects its output; kills it after the command
/// timeout, so a statement stuck on a lock fails the test instead of
/// hanging CI forever.
fn wait_with_deadline(child: Child, description: &str, timeout: Duration) -> Result<Output> {
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let result = match receiver.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => {
            let pid = i32::try_from(pid).unwrap_or(i32::MAX);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            return Err(Error::Timeout {
                command: description.to_owned(),
                secs: timeout.as_secs(),
            });
        }
    };
    let _ = waiter.join();
    result.map_err(|source| Error::Spawn {
        command: description.to_owned(),
        source,
    })
}

/// `program arg1 arg2 …` for error messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&shell_quote(arg));
    }
    text
}

fn shell_quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain && !arg.is_empty() {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
