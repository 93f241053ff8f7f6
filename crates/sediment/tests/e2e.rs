//! End to end with real processes: `sediment init`, `start`, `tenant create`;
//! a base backup of `main` at its initdb LSN, fetched by stock
//! `pg_basebackup` from the page service, starts a stock postmaster whose
//! `postgres` database dumps identically to a fresh initdb cluster's; after a
//! pageserver restart everything is back and the base backup's relation
//! files are byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn sediment_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sediment"))
}

/// `cargo test -p sediment` does not build other packages' binaries; build
/// the pageserver next to sediment if it is missing.
fn ensure_pageserver_built() {
    let pageserver = sediment_exe().with_file_name("pageserver");
    if pageserver.exists() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = sediment_exe()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let status = Command::new(cargo)
        .args(["build", "-p", "pageserver", "--bin", "pageserver"])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(pageserver.exists());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A command run as the `postgres` OS user when we are root.
fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(path: &Path) {
    if is_root() {
        assert!(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap()
            .success());
    }
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

struct Sediment {
    workdir: PathBuf,
}

impl Sediment {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::new(sediment_exe());
        command.arg("--workdir").arg(&self.workdir).args(args);
        command
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&run_ok(&mut self.cmd(&all))).unwrap()
    }
}

/// A Postgres data directory started on a port; stopped on drop.
struct Postgres {
    pgdata: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(pgdata: &Path, port: u16) -> Postgres {
        let socket_dir = pgdata;
        let mut conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap_or_default();
        conf.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            socket_dir.display()
        ));
        std::fs::write(pgdata.join("postgresql.conf"), conf).unwrap();
        std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
        give_to_postgres(pgdata);
        let log = pgdata.parent().unwrap().join(format!("pg-{port}.log"));
        std::fs::write(&log, "").unwrap();
        give_to_postgres(&log);
        let output = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(&log)
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "postgres did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Postgres {
            pgdata: pgdata.to_path_buf(),
            port,
        }
    }

    fn psql(&self, sql: &str) -> String {
        run_ok(Command::new(format!("{PG_BIN}/psql")).args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-p",
            &self.port.to_string(),
            "-c",
            sql,
        ]))
    }

    /// `pg_dump` of the `postgres` database, without the per-run random
    /// `\restrict` key lines newer pg_dump releases emit.
    fn dump(&self) -> String {
        let dump = run_ok(Command::new(format!("{PG_BIN}/pg_dump")).args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &self.port.to_string(),
            "postgres",
        ]));
        dump.lines()
            .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The catalog contents that pg_dump does not show for an empty database.
    fn catalog(&self) -> String {
        self.psql("SELECT relname, relkind, relpages, reltuples FROM pg_class ORDER BY relname")
            + &self.psql("SELECT proname, count(*) FROM pg_proc GROUP BY proname ORDER BY proname")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn base_backup(pg_port: u16, tenant: &str, timeline: &str, lsn: &str, dest: &Path) {
    let connstr = format!(
        "host=127.0.0.1 port={pg_port} user=postgres dbname=postgres options='-c sediment.tenant={tenant} -c sediment.timeline={timeline} -c sediment.lsn={lsn}'"
    );
    run_ok(
        Command::new(format!("{PG_BIN}/pg_basebackup"))
            .arg("-d")
            .arg(connstr)
            .arg("-D")
            .arg(dest)
            .args(["-F", "p", "-X", "none", "--no-manifest", "--no-sync"]),
    );
}

/// Every relation file (under base/ and global/) with its bytes.
fn relation_files(pgdata: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for top in ["base", "global"] {
        collect(pgdata, &pgdata.join(top), &mut files);
    }
    files.retain(|name, _| {
        let file = name.rsplit('/').next().unwrap();
        file.bytes().next().is_some_and(|b| b.is_ascii_digit())
    });
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            files.insert(name, std::fs::read(&path).unwrap());
        }
    }
}

fn fresh_initdb_dump(scratch: &Path) -> (String, String) {
    let pgdata = scratch.join("fresh");
    std::fs::create_dir_all(&pgdata).unwrap();
    give_to_postgres(scratch);
    run_ok(
        as_postgres(&format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(&pgdata)
            .args([
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--auth=trust",
                "--no-instructions",
                "--no-sync",
            ])
            .env("LC_ALL", "C.UTF-8"),
    );
    let server = Postgres::start(&pgdata, free_port());
    (server.dump(), server.catalog())
}

#[test]
fn init_start_tenant_basebackup_restart() {
    ensure_pageserver_built();
    let scratch = tempfile::tempdir().unwrap();
    // Postgres runs as another OS user and must reach the endpoint dirs.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sediment = Sediment {
        workdir: scratch.path().join("work"),
    };
    let (http_port, pg_port) = (free_port(), free_port());

    run_ok(&mut sediment.cmd(&[
        "init",
        "--http-port",
        &http_port.to_string(),
        "--pg-port",
        &pg_port.to_string(),
    ]));
    // A second init refuses to overwrite.
    assert!(!sediment.cmd(&["init"]).output().unwrap().status.success());
    run_ok(&mut sediment.cmd(&["start"]));

    // Bad settings and ids are refused by the pageserver with its message.
    let refused = sediment
        .cmd(&["tenant", "create", "-c", "no_such_setting=1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no_such_setting"));
    let refused = sediment
        .cmd(&["tenant", "create", "--tenant-id", "xyz"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("400"));

    let created = sediment.json(&[
        "tenant",
        "create",
        "--set-default",
        "-c",
        "gc_horizon=1048576",
    ]);
    let tenant = created["tenant_id"].as_str().unwrap().to_owned();
    let timeline = created["timeline_id"].as_str().unwrap().to_owned();
    let initdb_lsn = created["timeline"]["last_record_lsn"]
        .as_str()
        .unwrap()
        .to_owned();

    // A branch is metadata only; the tree shows it under main.
    let branch = sediment.json(&["timeline", "branch", "--branch-name", "dev"]);
    assert_eq!(branch["timeline"]["ancestor_lsn"], json!(initdb_lsn));
    let refused = sediment
        .cmd(&[
            "timeline",
            "branch",
            "--branch-name",
            "x",
            "--ancestor-start-lsn",
            "FF/0",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("406"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let tenants_before = sediment.json(&["tenant", "list"]);
    let timelines_before = sediment.json(&["timeline", "list"]);
    assert_eq!(timelines_before[0]["branch"], "main");
    assert_eq!(timelines_before[1]["branch"], "dev");
    assert_eq!(timelines_before[1]["depth"], 1);
    assert_eq!(timelines_before[1]["ancestor_timeline_id"], json!(timeline));

    // Base backup at the initdb LSN starts a stock postmaster.
    let first = scratch.path().join("bb1");
    base_backup(pg_port, &tenant, &timeline, &initdb_lsn, &first);
    let first_files = relation_files(&first);
    assert!(
        first_files.len() > 100,
        "only {} relation files",
        first_files.len()
    );
    let dump = {
        let server = Postgres::start(&first, free_port());
        let databases = server.psql("SELECT datname FROM pg_database ORDER BY datname");
        assert_eq!(
            databases.lines().collect::<Vec<_>>(),
            ["postgres", "template0", "template1"]
        );
        (server.dump(), server.catalog())
    };
    let fresh = fresh_initdb_dump(scratch.path());
    assert!(dump.0.contains("PostgreSQL database dump complete"));
    assert_eq!(
        dump.0, fresh.0,
        "pg_dump differs from a fresh initdb cluster's"
    );
    assert!(dump.1.lines().count() > 3000, "catalog listing too short");
    assert_eq!(
        dump.1, fresh.1,
        "catalog differs from a fresh initdb cluster's"
    );

    // The CLI's own endpoint does the same.
    let endpoint = sediment.json(&["endpoint", "start", "ro", "--lsn", &initdb_lsn]);
    let port = endpoint["port"].as_u64().unwrap().to_string();
    let read_only = run_ok(Command::new(format!("{PG_BIN}/psql")).args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-p",
        &port,
        "-c",
        "SHOW default_transaction_read_only",
    ]));
    assert_eq!(read_only.trim(), "on");
    // A second endpoint on the branch reads through to main.
    let on_branch = sediment.json(&[
        "endpoint",
        "start",
        "ro-dev",
        "--branch-name",
        "dev",
        "--lsn",
        &initdb_lsn,
    ]);
    let port = on_branch["port"].as_u64().unwrap().to_string();
    let count = run_ok(Command::new(format!("{PG_BIN}/psql")).args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-p",
        &port,
        "-c",
        "SELECT count(*) FROM pg_database",
    ]));
    assert_eq!(count.trim(), "3");
    let listed = sediment.json(&["endpoint", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["running"], true);
    run_ok(&mut sediment.cmd(&["endpoint", "stop", "ro", "--destroy"]));
    run_ok(&mut sediment.cmd(&["endpoint", "stop", "ro-dev", "--destroy"]));
    assert_eq!(sediment.json(&["endpoint", "list"]), json!([]));

    // Restart: everything comes back, and the backup is byte-identical.
    run_ok(&mut sediment.cmd(&["stop"]));
    assert!(!sediment
        .cmd(&["tenant", "list"])
        .output()
        .unwrap()
        .status
        .success());
    run_ok(&mut sediment.cmd(&["start"]));
    assert_eq!(sediment.json(&["tenant", "list"]), tenants_before);
    assert_eq!(sediment.json(&["timeline", "list"]), timelines_before);
    let second = scratch.path().join("bb2");
    base_backup(pg_port, &tenant, &timeline, &initdb_lsn, &second);
    let second_files = relation_files(&second);
    assert_eq!(
        first_files.keys().collect::<Vec<_>>(),
        second_files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first_files {
        assert!(bytes == &second_files[name], "{name} differs after restart");
    }
    run_ok(&mut sediment.cmd(&["stop"]));
}
