//! Running stock PostgreSQL programs for an endpoint: `pg_ctl` start/stop,
//! `pg_controldata`, liveness of a postmaster — as the unprivileged OS user
//! when we are root, because Postgres refuses to run as root.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use postgres_wal::Lsn;

use crate::workdir::Workdir;

/// `pg_ctl -t`: generous, the machine may be loaded.
const PG_CTL_TIMEOUT_SECS: &str = "120";

/// Runs Postgres programs as the unprivileged OS user when we are root
/// (Postgres refuses to run as root), directly otherwise: the workspace's
/// [`pgproc::RunAs`], with its one setting (`SEDIMENT_PG_OS_USER`, else
/// `postgres`).
pub struct PgUser {
    run_as: pgproc::RunAs,
}

impl PgUser {
    /// Resolves the OS user.
    pub fn new() -> anyhow::Result<PgUser> {
        Ok(PgUser {
            run_as: pgproc::RunAs::detect()?,
        })
    }

    /// The (uid, gid) Postgres runs as.
    pub fn ids(&self) -> (u32, u32) {
        self.run_as.ids()
    }

    /// Login name of the OS user Postgres runs as (what `peer`
    /// authentication on the Unix socket sees).
    pub fn name(&self) -> anyhow::Result<String> {
        Ok(self.run_as.user_name()?)
    }

    /// Hands `dir` (recursively) to the Postgres user.
    pub fn give(&self, dir: &Path) -> anyhow::Result<()> {
        let Some(user) = self.run_as.switch_to() else {
            return Ok(());
        };
        self.run_as.chown_recursive(dir)?;
        // The user must also be able to reach the directory.
        let reachable = self
            .run_as
            .command("test")
            .arg("-x")
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !reachable {
            bail!(
                "OS user {} cannot reach {}; make its parent directories traversable (chmod o+x)",
                user.name,
                dir.display()
            );
        }
        Ok(())
    }

    /// Runs `command` (as the Postgres user when root); fails with its
    /// stderr, returns its stdout.
    pub fn run(&self, command: &mut Command, what: &str) -> anyhow::Result<String> {
        let output = self
            .run_as
            .apply(command)
            .output()
            .with_context(|| format!("cannot run {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `pg_ctl start` of `pgdata`, logging to `log`; waits until it accepts
/// connections.
pub fn start(workdir: &Workdir, pg: &PgUser, pgdata: &Path, log: &Path) -> anyhow::Result<()> {
    pg.run(
        Command::new(workdir.config.pg_bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(log)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"]),
        "pg_ctl start",
    )
    // The server's own reason is in its log: quote the end of it.
    .with_context(|| format!("see {} ({})", log.display(), log_tail(log)))
    .map(drop)
}

/// The last lines of a Postgres log on one line, for an error message
/// (a failed start's reason, such as a port already bound, is there).
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// `pg_ctl stop -m fast`: a clean shutdown checkpoint (and, on a primary,
/// its walsenders hand every WAL byte to their standbys before exiting).
pub fn stop_fast(workdir: &Workdir, pg: &PgUser, pgdata: &Path) -> anyhow::Result<()> {
    pg.run(
        Command::new(workdir.config.pg_bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(pgdata)
            .args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT_SECS, "stop"]),
        "pg_ctl stop",
    )
    .map(drop)
}

/// Runs one SQL statement on the endpoint listening on 127.0.0.1:`port`
/// with `psql` (a client: no need to switch users) and returns its
/// unaligned, tuples-only output.
pub fn query(workdir: &Workdir, port: u16, sql: &str) -> anyhow::Result<String> {
    let output = Command::new(workdir.config.pg_bin_dir.join("psql"))
        .args(["-X", "-A", "-t", "-q", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-d", "postgres", "-p", &port.to_string(), "-c", sql])
        .env_remove("PGOPTIONS")
        // Every endpoint's superuser password is listed there.
        .env("PGPASSFILE", super::passwords::pgpass_file(workdir))
        .output()
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!(
            "psql on port {port} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether `postmaster.pid` names a live process.
pub fn is_running(pgdata: &Path) -> bool {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// What `pg_controldata` says about a data directory that we rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// "Database cluster state", e.g. `shut down`, `in production`.
    pub state: String,
    /// "Latest checkpoint location".
    pub checkpoint: Lsn,
}

impl ControlData {
    /// Whether the server shut down cleanly (its last WAL record is the
    /// shutdown checkpoint at [`ControlData::checkpoint`]).
    pub fn is_shut_down(&self) -> bool {
        self.state == "shut down"
    }
}

/// Runs `pg_controldata` on `pgdata`.
pub fn control_data(workdir: &Workdir, pg: &PgUser, pgdata: &Path) -> anyhow::Result<ControlData> {
    let text = pg.run(
        Command::new(workdir.config.pg_bin_dir.join("pg_controldata"))
            .arg("-D")
            .arg(pgdata)
            .env("LC_ALL", "C"),
        "pg_controldata",
    )?;
    parse_control_data(&text)
}

/// Parses the two fields of `pg_controldata`'s output we need.
pub fn parse_control_data(text: &str) -> anyhow::Result<ControlData> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .with_context(|| format!("pg_controldata printed no {name:?}"))
    };
    let state = field("Database cluster state")?.to_owned();
    let checkpoint = field("Latest checkpoint location")?;
    let checkpoint = checkpoint
        .parse()
        .with_context(|| format!("pg_controldata printed a bad checkpoint LSN {checkpoint:?}"))?;
    Ok(ControlData { state, checkpoint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_data_fields_are_found() {
        let text = "pg_control version number:            1300\n\
                    Database cluster state:               shut down\n\
                    pg_control last modified:             Sun 22 Nov 2026\n\
                    Latest checkpoint location:           0/16B9188\n\
                    Latest checkpoint's REDO location:    0/16B9150\n";
        let parsed = parse_control_data(text).unwrap();
        assert!(parsed.is_shut_down());
        assert_eq!(parsed.checkpoint, "0/16B9188".parse::<Lsn>().unwrap());
        assert!(parse_control_data("Database cluster state: in production\n").is_err());
        assert!(parse_control_data(
            "Database cluster state: x\nLatest checkpoint location: nope\n"
        )
        .is_err());
    }
}
