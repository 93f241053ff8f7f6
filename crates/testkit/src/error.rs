//! The one error type of the harness.
//!
//! Test failures are read by people, so every variant names what was being
//! done (the command line, the path, the SQL) and carries what the child
//! process printed on stderr: "psql failed" alone is useless in a CI log.

use std::path::PathBuf;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL 15 installation was found where we looked.
    #[error("PostgreSQL 15 binaries not found: {reason} (set SEDIMENT_PG_BIN to the directory holding postgres, pg_ctl, initdb, psql)")]
    BinariesNotFound {
        /// What was checked and why it did not qualify.
        reason: String,
    },

    /// The OS user that must run Postgres (we are root) is unusable, or a
    /// path could not be given to it.
    #[error(transparent)]
    OsUser(#[from] pgproc::Error),

    /// A child process could not be spawned at all.
    #[error("could not run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A child process ran and exited unsuccessfully.
    #[error("{command} failed ({status}):\n{stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Exit status as text (`exit status: 3`, `signal: 9`).
        status: String,
        /// What it wrote to stderr (and, for server start, the server log tail).
        stderr: String,
    },

    /// A child process ran longer than the command timeout and was killed.
    #[error(
        "{command} did not finish within {secs} s and was killed (SEDIMENT_COMMAND_TIMEOUT_SECS)"
    )]
    Timeout {
        /// The command line.
        command: String,
        /// The timeout that expired.
        secs: u64,
    },

    /// A file-system operation on the harness's own files failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("create", "read", "copy" …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A child's output did not have the shape we rely on.
    #[error("unexpected output from {what}: {output:?}")]
    UnexpectedOutput {
        /// Which command/query produced it.
        what: String,
        /// The text that could not be understood.
        output: String,
    },

    /// The server could not be started on any of the ports tried.
    #[error("postgres did not start after {attempts} attempts (ports taken?); last error: {last}")]
    NoFreePort {
        /// How many ports were tried.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<Error>,
    },

    /// The operation needs a running server and the cluster is stopped.
    #[error("cluster at {data_dir} is not running")]
    NotRunning {
        /// The cluster's data directory.
        data_dir: PathBuf,
    },
}

/// Result alias for harness operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
