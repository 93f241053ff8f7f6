//! Helpers for tests that run real PostgreSQL 15 processes: scratch
//! directories the `postgres` OS user can use, starting a postmaster on a
//! data directory (Unix socket only), and running client tools.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use datadir::bootstrap::{give_to_postgres, postgres_command};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub fn bin(name: &str) -> PathBuf {
    Path::new(PG_BIN).join(name)
}

/// A temporary directory the postgres user can enter.
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("datadir-test-")
        .tempdir()
        .unwrap();
    chmod(dir.path(), 0o755);
    dir
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates `path` owned by the postgres user.
pub fn postgres_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    give_to_postgres(path).unwrap();
    path.to_owned()
}

/// Hands a whole tree to the postgres user and sets the data directory mode.
pub fn give_tree_to_postgres(path: &Path) {
    datadir::bootstrap::run_as()
        .unwrap()
        .chown_recursive(path)
        .unwrap();
    chmod(path, 0o700);
}

pub fn run(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A running postmaster on a data directory, stopped on drop.
pub struct Postgres {
    pub pgdata: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

impl Postgres {
    /// Starts a postmaster listening only on a Unix socket in `socket_dir`.
    pub fn start(pgdata: &Path, socket_dir: &Path, port: u16) -> Postgres {
        Postgres::start_with(pgdata, socket_dir, port, "")
    }

    /// Starts with extra server options (`-c name=value ...`).
    pub fn start_with(pgdata: &Path, socket_dir: &Path, port: u16, extra: &str) -> Postgres {
        let log = socket_dir.join("postmaster.log");
        let mut command = postgres_command(&bin("pg_ctl")).unwrap();
        command
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(&log)
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses='' -c fsync=off {extra}",
                socket_dir.display()
            ))
            .arg("start");
        let output = command.output().unwrap();
        let pg = Postgres {
            pgdata: pgdata.to_owned(),
            socket_dir: socket_dir.to_owned(),
            port,
            log,
        };
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&output.stderr),
            pg.log_text()
        );
        pg
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self, tool: &str) -> Command {
        let mut command = postgres_command(&bin(tool)).unwrap();
        command
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg("postgres");
        command
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut command = self.client("psql");
        command.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ]);
        run(command)
    }

    pub fn databases(&self) -> Vec<String> {
        let mut command = self.client("psql");
        command.args(["-X", "-A", "-t", "-l"]);
        let mut names: Vec<String> = run(command)
            .lines()
            .filter_map(|l| l.split('|').next())
            .filter(|n| !n.is_empty() && !n.contains('='))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    pub fn dump(&self, db: &str) -> String {
        let mut command = self.client("pg_dump");
        command.args(["--no-sync", "-d", db]);
        // pg_dump 15.14+ brackets its output with a random \restrict key.
        run(command)
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A digest of the catalogs: every relation, type and function by OID.
    pub fn catalog_digest(&self, db: &str) -> String {
        self.psql(
            db,
            "SELECT md5(string_agg(oid::text || relname || relfilenode::text, ',' ORDER BY oid)) FROM pg_class \
             UNION ALL SELECT md5(string_agg(oid::text || proname, ',' ORDER BY oid)) FROM pg_proc \
             UNION ALL SELECT md5(string_agg(oid::text || typname, ',' ORDER BY oid)) FROM pg_type",
        )
    }

    pub fn stop(&self) {
        let mut command = postgres_command(&bin("pg_ctl")).unwrap();
        command
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "stop"]);
        let _ = command.output();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Unpacks a tar into a fresh directory owned by postgres with mode 0700.
pub fn untar(tar_bytes: &[u8], into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    tar::Archive::new(tar_bytes).unpack(into).unwrap();
    give_tree_to_postgres(into);
}

/// Relation file contents of a data directory, by relative path.
pub fn relation_files(pgdata: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for top in ["global", "base"] {
        walk(pgdata, &pgdata.join(top), &mut out);
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(name, std::fs::read(&path).unwrap());
        }
    }
}
