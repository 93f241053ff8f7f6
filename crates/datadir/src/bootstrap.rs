//! Bootstrap: run the stock `initdb` in a scratch directory and import the
//! result, giving a new root timeline its first (initdb) LSN.
//!
//! PostgreSQL refuses to run as root, so when we are root `initdb` runs as
//! the OS user `postgres` (through `runuser`) in a directory it owns.

use std::path::{Path, PathBuf};
use std::process::Command;

use storage::Timeline;

use crate::error::ImportError;
use crate::import::{import_datadir, ImportStats};

/// The OS user PostgreSQL binaries run as when we are root.
pub const POSTGRES_OS_USER: &str = "postgres";

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

/// Whether PostgreSQL binaries must run under [`POSTGRES_OS_USER`].
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Hands `dir` to the postgres user when we are root (no-op otherwise).
pub fn give_to_postgres(dir: &Path) -> Result<(), ImportError> {
    if !running_as_root() {
        return Ok(());
    }
    let user = nix::unistd::User::from_name(POSTGRES_OS_USER)
        .ok()
        .flatten()
        .ok_or_else(|| ImportError::Initdb(format!("no OS user {POSTGRES_OS_USER:?}")))?;
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).map_err(|e| ImportError::Io {
        path: dir.to_owned(),
        source: e.into(),
    })
}

/// A command for a PostgreSQL binary, run as the postgres user when root.
pub fn postgres_command(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", POSTGRES_OS_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `initdb` for an empty `pgdata` with the settings every Sediment
/// cluster shares: superuser `postgres`, UTF-8, C.UTF-8 locale, trust auth.
pub fn run_initdb(pg_bin_dir: &Path, pgdata: &Path) -> Result<(), ImportError> {
    let output = postgres_command(&pg_bin_dir.join("initdb"))
        .arg("-D")
        .arg(pgdata)
        .args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth=trust",
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
