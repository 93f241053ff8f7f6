//! Endpoint credentials in a work directory with auth on (`init --auth`):
//! no `trust` anywhere.
//!
//! The base backup's `pg_hba.conf` is replaced by one where TCP clients need
//! a password (`scram-sha-256`) and the only passwordless way in is the
//! Unix socket for the `postgres` OS user (`peer`), which sediment uses once
//! to set the generated passwords: one for the superuser `postgres`, one for
//! the role the pageserver streams WAL with ([`REPLICATION_ROLE`], allowed
//! replication only). Both live in the endpoint's state file (mode 0600);
//! the superuser's is in its connection string, and `<workdir>/pgpass`
//! (mode 0600, libpq's password file format) lets sediment's own `psql`
//! calls in.
//!
//! Without `--auth` the base backup's `pg_hba.conf` is kept as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::pg::PgUser;
use crate::workdir::Workdir;

/// The role the pageserver's replication connection logs in as.
pub const REPLICATION_ROLE: &str = "sediment_replication";

/// `pg_hba.conf` of an endpoint with auth on (earlier lines win).
const PG_HBA_CONF: &str = "\
# Written by sediment: passwords (scram-sha-256) for every TCP client; the
# postgres OS user alone may use the Unix socket without one (peer).
local   all             postgres                                peer
host    replication     sediment_replication 127.0.0.1/32       scram-sha-256
host    replication     sediment_replication ::1/128            scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
";

/// Whether endpoints of this work directory get passwords.
pub fn enabled(workdir: &Workdir) -> bool {
    workdir
        .config
        .security
        .as_ref()
        .is_some_and(|s| s.private_key.is_some())
}

/// A fresh random password (128 bits, hex).
pub fn generate() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// libpq's password file for sediment's own connections.
pub fn pgpass_file(workdir: &Workdir) -> PathBuf {
    workdir.path.join("pgpass")
}

/// Replaces the endpoint's `pg_hba.conf` with the password-only one.
pub fn write_hba(pgdata: &Path) -> anyhow::Result<()> {
    let path = pgdata.join("pg_hba.conf");
    std::fs::write(&path, PG_HBA_CONF).with_context(|| format!("cannot write {}", path.display()))
}

/// Sets both passwords through the Unix socket in `socket_dir`, and records
/// the superuser's in the work directory's password file.
pub fn set_passwords(
    workdir: &Workdir,
    pg: &PgUser,
    socket_dir: &Path,
    port: u16,
    superuser: &str,
    replication: &str,
) -> anyhow::Result<()> {
    // synchronous_commit=local: a writable endpoint's commits otherwise wait
    // for the pageserver, which cannot connect before this password exists.
    // The passwords are hex, so quoting them needs no escaping.
    let sql = format!(
        "SET synchronous_commit = local; SET default_transaction_read_only = off; \
         ALTER ROLE postgres PASSWORD '{superuser}'; \
         DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REPLICATION_ROLE}') \
         THEN CREATE ROLE {REPLICATION_ROLE} LOGIN REPLICATION; END IF; END$$; \
         ALTER ROLE {REPLICATION_ROLE} PASSWORD '{replication}'"
    );
    let mut psql = Command::new(workdir.config.pg_bin_dir.join("psql"));
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(socket_dir)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            &sql,
        ]);
    pg.run(&mut psql, "setting the endpoint's passwords")?;
    remember(workdir, port, superuser)
}

/// Puts `127.0.0.1:port:*:postgres:password` into the password file,
/// replacing the port's previous line.
fn remember(workdir: &Workdir, port: u16, password: &str) -> anyhow::Result<()> {
    let path = pgpass_file(workdir);
    let prefix = format!("127.0.0.1:{port}:");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{prefix}*:postgres:{password}"));
    let text = lines.join("\n") + "\n";
    auth::tls::write_private(&path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_has_no_trust_line() {
        for line in PG_HBA_CONF.lines().filter(|l| !l.starts_with('#')) {
            let method = line.split_whitespace().last().unwrap_or_default();
            assert!(method == "scram-sha-256" || method == "peer", "{line}");
        }
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
    }
}
