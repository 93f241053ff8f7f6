//! Endpoint credentials: no `trust` anywhere, for every endpoint.
//!
//! The base backup's `pg_hba.conf` is replaced by one where TCP clients need
//! a password (`scram-sha-256`) and the only passwordless way in is the
//! Unix socket in the endpoint's directory for the OS user Postgres runs as
//! (`peer`: the kernel vouches for the connecting process's user), mapped
//! to the superuser `postgres` by the `pg_ident.conf` map [`IDENT_MAP`]. Sediment uses that
//! once per start to set two fresh random passwords: one for the superuser
//! `postgres`, one for the role the pageserver streams WAL with
//! ([`REPLICATION_ROLE`], allowed replication only). Both live in the
//! endpoint's state file (mode 0600); the superuser's is in its connection
//! string, the replication one in the pageserver's WAL source connection
//! string, and `<workdir>/pgpass` (mode 0600, libpq's password file format)
//! lets sediment's own `psql` calls in.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::pg::PgUser;
use crate::workdir::Workdir;

/// The role the pageserver's replication connection logs in as.
pub const REPLICATION_ROLE: &str = "sediment_replication";

/// The `pg_ident.conf` map that lets the OS user Postgres runs as in as the
/// superuser `postgres` on the Unix socket.
pub const IDENT_MAP: &str = "sediment";

/// `pg_hba.conf` of every endpoint (earlier lines win).
const PG_HBA_CONF: &str = "\
# Written by sediment: passwords (scram-sha-256) for every TCP client; the
# OS user Postgres runs as alone may use the Unix socket without one (peer,
# as the superuser postgres, through the ident map sediment).
local   all             postgres                                peer map=sediment
host    replication     sediment_replication 127.0.0.1/32       scram-sha-256
host    replication     sediment_replication ::1/128            scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
";

/// A fresh random password (128 bits, hex).
pub fn generate() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// libpq's password file for sediment's own connections.
pub fn pgpass_file(workdir: &Workdir) -> PathBuf {
    workdir.path.join("pgpass")
}

/// `pg_ident.conf` mapping OS user `os_user` to the superuser.
fn pg_ident_conf(os_user: &str) -> String {
    format!(
        "# Written by sediment: the OS user Postgres runs as.\n{IDENT_MAP}  {os_user}  postgres\n"
    )
}

/// Replaces the endpoint's `pg_hba.conf` with the password-only one and its
/// `pg_ident.conf` with the map for `os_user` (the OS user Postgres runs as).
pub fn write_hba(pgdata: &Path, os_user: &str) -> anyhow::Result<()> {
    // A name with blanks or quotes would change the map's meaning; login
    // names never have them.
    if os_user.is_empty()
        || !os_user
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'#')
    {
        anyhow::bail!("OS user name {os_user:?} cannot go into pg_ident.conf");
    }
    for (name, text) in [
        ("pg_hba.conf", PG_HBA_CONF.to_owned()),
        ("pg_ident.conf", pg_ident_conf(os_user)),
    ] {
        crate::workdir::write_atomic(&pgdata.join(name), text.as_bytes())?;
    }
    Ok(())
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
    // default_transaction_read_only=off: a read-only endpoint has it on.
    // Both as connection options: the statements of one `-c` run in one
    // transaction, which a `SET` inside it would come too late for.
    // The passwords are hex, so quoting them needs no escaping.
    let sql = format!(
        "ALTER ROLE postgres PASSWORD '{superuser}'; \
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
        ])
        .env(
            "PGOPTIONS",
            "-c synchronous_commit=local -c default_transaction_read_only=off",
        );
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
        let dir = tempfile::tempdir().unwrap();
        write_hba(dir.path(), "postgres").unwrap();
        let hba = std::fs::read_to_string(dir.path().join("pg_hba.conf")).unwrap();
        let rules: Vec<&str> = hba.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rules.len(), 5);
        for line in rules {
            let words: Vec<&str> = line.split_whitespace().collect();
            let method = if words[0] == "local" {
                words[3]
            } else {
                words[4]
            };
            assert!(method == "scram-sha-256" || method == "peer", "{line}");
            assert!(!line.contains("trust"), "{line}");
        }
        let ident = std::fs::read_to_string(dir.path().join("pg_ident.conf")).unwrap();
        assert!(ident.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == [IDENT_MAP, "postgres", "postgres"]
        ));
        assert!(write_hba(dir.path(), "a b").is_err());
        assert!(write_hba(dir.path(), "").is_err());
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
    }
}
