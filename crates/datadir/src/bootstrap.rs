//! Bootstrap: run the stock `initdb` in a scratch directory and import the
//! result, giving a new root timeline its first (initdb) LSN.
//!
//! PostgreSQL refuses to run as root, so when we are root `initdb` runs as
//! the unprivileged OS user ([`pgproc::RunAs`]: `SEDIMENT_PG_OS_USER`, else
//! `postgres`) in a directory it owns.
//!
//! The cluster initdb makes has no `trust` in its `pg_hba.conf`: `peer` on
//! the Unix socket, `scram-sha-256` over TCP. Nothing ever connects to it
//! (it is imported, never started), but a data directory Sediment writes
//! does not let anyone in without a password.

use std::path::{Path, PathBuf};
use std::process::Command;

use storage::Timeline;

use crate::error::ImportError;
use crate::import::{import_datadir, ImportStats};

/// Runs `initdb` into `tmp_dir/initdb-<pid>-<n>`, imports it into
/// `timeline` (which must be empty below the new cluster's checkpoint LSN)
/// and removes the scratch directory.
pub fn bootstrap(
    timeline: &Timeline,
    pg_bin_dir: &Path,
    tmp_dir: &Path,
) -> Result<ImportStats, ImportError> {
    let pgdata = scratch_dir(tmp_dir)?;
    let result = run_initdb(pg_bin_dir, &pgdata).and_then(|()| import_datadir(timeline, &pgdata));
    // Best effort: a leftover scratch directory wastes space, nothing more.
    let _ = std::fs::remove_dir_all(&pgdata);
    result
}

/// A fresh, empty directory under `tmp_dir`, owned by the postgres user
/// when we are root.
fn scratch_dir(tmp_dir: &Path) -> Result<PathBuf, ImportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ImportError::Io { path, source }
    };
    std::fs::create_dir_all(tmp_dir).map_err(io(tmp_dir))?;
    let mut attempt = 0u32;
    loop {
        let dir = tmp_dir.join(format!("initdb-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                give_to_postgres(&dir)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
            }
            Err(source) => return Err(ImportError::Io { path: dir, source }),
        }
    }
}

/// Whether PostgreSQL binaries must run as another OS user (we are root).
pub fn running_as_root() -> bool {
    pgproc::running_as_root()
}

/// How Postgres programs run here (as whom), for callers that spawn or
/// hand files to them themselves.
pub fn run_as() -> Result<pgproc::RunAs, ImportError> {
    Ok(pgproc::RunAs::detect()?)
}

/// Hands `dir` to the Postgres OS user when we are root (no-op otherwise).
pub fn give_to_postgres(dir: &Path) -> Result<(), ImportError> {
    Ok(pgproc::RunAs::detect()?.chown(dir)?)
}

/// A command for a PostgreSQL binary, run as the Postgres OS user when we
/// are root.
pub fn postgres_command(program: &Path) -> Result<Command, ImportError> {
    Ok(pgproc::RunAs::detect()?.command(program))
}

/// Runs `initdb` for an empty `pgdata` with the settings every Sediment
/// cluster shares: superuser `postgres`, UTF-8, C.UTF-8 locale; `peer` on
/// the Unix socket and `scram-sha-256` over TCP (the superuser gets no
/// password, so nobody logs in over TCP until an endpoint sets one).
pub fn run_initdb(pg_bin_dir: &Path, pgdata: &Path) -> Result<(), ImportError> {
    let output = postgres_command(&pg_bin_dir.join("initdb"))?
        .arg("-D")
        .arg(pgdata)
        .args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--no-instructions",
        ])
        .env("LC_ALL", "C.UTF-8")
        .output()
        .map_err(|e| ImportError::Initdb(format!("starting {}: {e}", pg_bin_dir.display())))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ImportError::Initdb(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
