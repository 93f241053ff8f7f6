//! Running stock `initdb` for a new root timeline.
//!
//! Postgres refuses to run as root, so when the pageserver is root `initdb`
//! runs as the configured OS user (via `runuser`) in a scratch directory that
//! user owns. The scratch directory lives in the system temp dir rather than
//! the work directory, because the work directory's parents may not be
//! traversable by that user.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why `initdb` could not produce a data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitdbError {
    /// Creating or handing over the scratch directory failed.
    #[error("cannot prepare a scratch directory for initdb: {0}")]
    Scratch(#[source] std::io::Error),
    /// The OS user to run initdb as does not exist.
    #[error("OS user {0:?} does not exist (Postgres refuses to run as root)")]
    NoSuchUser(String),
    /// `initdb` could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `initdb` ran and failed.
    #[error("initdb failed ({status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The tail of its stderr.
        stderr: String,
    },
}

/// A data directory made by `initdb`, removed when dropped.
#[derive(Debug)]
pub struct InitdbCluster {
    scratch: tempfile::TempDir,
}

impl InitdbCluster {
    /// The data directory.
    pub fn pgdata(&self) -> PathBuf {
        self.scratch.path().join("pgdata")
    }
}

/// The arguments every bootstrap uses, so a fresh `initdb` with the same
/// arguments yields the same catalog contents.
pub const INITDB_ARGS: &[&str] = &[
    "--username=postgres",
    "--encoding=UTF8",
    "--locale=C",
    "--auth=trust",
    "--no-instructions",
    "--no-sync",
];

/// Runs `initdb` from `pg_bin_dir`, as `os_user` when we are root.
pub fn run_initdb(pg_bin_dir: &Path, os_user: &str) -> Result<InitdbCluster, InitdbError> {
    let scratch = tempfile::Builder::new()
        .prefix("sediment-initdb-")
        .tempdir()
        .map_err(InitdbError::Scratch)?;
    let is_root = nix::unistd::Uid::effective().is_root();
    if is_root {
        let user = nix::unistd::User::from_name(os_user)
            .ok()
            .flatten()
            .ok_or_else(|| InitdbError::NoSuchUser(os_user.to_owned()))?;
        nix::unistd::chown(scratch.path(), Some(user.uid), Some(user.gid))
            .map_err(|errno| InitdbError::Scratch(errno.into()))?;
    }
    let cluster = InitdbCluster { scratch };
    let program = pg_bin_dir.join("initdb");
    let mut command = if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", os_user, "--"]).arg(&program);
        command
    } else {
        Command::new(&program)
    };
    command.arg("-D").arg(cluster.pgdata()).args(INITDB_ARGS);
    // initdb must not inherit a locale the user may lack, and must not
    // pick up a PGDATA that points elsewhere.
    command.env("LC_ALL", "C").env_remove("PGDATA");
    let output = command.output().map_err(|source| InitdbError::Spawn {
        program: program.clone(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(InitdbError::Failed {
            status: output.status,
            stderr: tail.trim().to_owned(),
        });
    }
    Ok(cluster)
}
