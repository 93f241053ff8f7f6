//! Helpers shared by the end-to-end tests: the `sediment` and `pageserver`
//! binaries in a temp work directory on free ports, the management API,
//! and real PostgreSQL 15 programs (run as the `postgres` OS user when we
//! are root, because Postgres refuses root).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The end-to-end tests start pageservers and several Postgres servers
/// each; on a small shared machine they run one at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the [`SERIAL`] lock, even if an earlier test panicked holding it.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn sediment_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sediment"))
}

/// `cargo test -p sediment` does not build other packages' binaries; build
/// the pageserver next to sediment if it is missing.
pub fn ensure_pageserver_built() {
    // Always ask cargo (a no-op when up to date, once per test process): a
    // pageserver binary left from an older build would test stale code.
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(build_pageserver);
}

fn build_pageserver() {
    let pageserver = sediment_exe().with_file_name("pageserver");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = sediment_exe()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    // Benches run from target/release: build the same profile there.
    let release = sediment_exe()
        .parent()
        .is_some_and(|dir| dir.ends_with("release"));
    let status = Command::new(cargo)
        .args(["build", "-p", "pageserver", "--bin", "pageserver"])
        .args(release.then_some("--release"))
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(pageserver.exists());
}

/// A free TCP port on 127.0.0.1 ([`testkit::free_port`]).
pub fn free_port() -> u16 {
    testkit::free_port().expect("no free port")
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A command run as the Postgres OS user when we are root.
pub fn as_postgres(program: &str) -> Command {
    pgproc::RunAs::detect().unwrap().command(program)
}

/// Gives `path` and everything below it to the Postgres OS user.
pub fn give_to_postgres(path: &Path) {
    pgproc::RunAs::detect()
        .unwrap()
        .chown_recursive(path)
        .unwrap();
}

/// Work directories this test process has used (each `Sediment::cmd`
/// adds its own), searched by [`endpoint_password`].
static WORKDIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn remember_workdir(workdir: &Path) {
    let mut dirs = WORKDIRS.lock().unwrap_or_else(|p| p.into_inner());
    if !dirs.iter().any(|d| d == workdir) {
        dirs.push(workdir.to_path_buf());
    }
}

/// Superuser passwords of servers that are no sediment endpoint (a test
/// cluster adopted from a base backup), by port.
static PASSWORDS: std::sync::Mutex<BTreeMap<u16, String>> = std::sync::Mutex::new(BTreeMap::new());

/// Makes [`client`] log in to 127.0.0.1:`port` with `password`.
pub fn remember_password(port: u16, password: &str) {
    PASSWORDS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(port, password.to_owned());
}

/// The superuser password of the sediment endpoint on 127.0.0.1:`port`
/// (every endpoint has one; there is no `trust`), from the endpoint state
/// files of the work directories this process used. A running endpoint
/// wins over a stopped one that had the same port. `None` when no
/// endpoint had the port.
pub fn endpoint_password(port: u16) -> Option<String> {
    let (running, stopped) = endpoint_passwords(port);
    running.or(stopped)
}

/// (a running endpoint's, a stopped endpoint's) password for `port`.
fn endpoint_passwords(port: u16) -> (Option<String>, Option<String>) {
    let dirs = WORKDIRS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut stopped = None;
    for workdir in dirs.iter().rev() {
        let Ok(entries) = std::fs::read_dir(workdir.join("endpoints")) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = std::fs::read(entry.path().join("endpoint.json")) else {
                continue;
            };
            let Ok(state) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if state["port"].as_u64() != Some(u64::from(port)) {
                continue;
            }
            let Some(password) = state["password"].as_str() else {
                continue;
            };
            if entry.path().join("pgdata/postmaster.pid").exists() {
                return (Some(password.to_owned()), stopped);
            }
            stopped.get_or_insert_with(|| password.to_owned());
        }
    }
    (None, stopped)
}

/// A PostgreSQL client program (`psql`, `pgbench`, `pg_dump`, ...) for the
/// endpoint on 127.0.0.1:`port`: `PGHOST`/`PGPORT`/`PGUSER` point at it and
/// `PGPASSWORD` is its superuser's password (see [`remember_password`],
/// [`endpoint_password`]).
pub fn client(tool: &str, port: u16) -> Command {
    let mut command = Command::new(format!("{PG_BIN}/{tool}"));
    command
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSFILE", "/nonexistent")
        .env_remove("PGPASSWORD");
    let remembered = PASSWORDS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&port)
        .cloned();
    // A running endpoint first: a remembered port may have been reused.
    let (running, stopped) = endpoint_passwords(port);
    if let Some(password) = running.or(remembered).or(stopped) {
        command.env("PGPASSWORD", password);
    }
    command
}

pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs a command that must fail; returns its stderr.
pub fn run_fail(command: &mut Command) -> String {
    let output: Output = command.output().unwrap();
    assert!(
        !output.status.success(),
        "{command:?} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch directory the `postgres` OS user can traverse.
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A `sediment` work directory with its pageserver ports.
pub struct Sediment {
    pub workdir: PathBuf,
    pub http_port: u16,
    pub pg_port: u16,
}

impl Sediment {
    /// `sediment init` on free ports (not started).
    pub fn init(scratch: &Path) -> Sediment {
        let sediment = Sediment {
            workdir: scratch.join("work"),
            http_port: free_port(),
            pg_port: free_port(),
        };
        run_ok(&mut sediment.cmd(&[
            "init",
            "--http-port",
            &sediment.http_port.to_string(),
            "--pg-port",
            &sediment.pg_port.to_string(),
        ]));
        sediment
    }

    /// `init`, `start`, `tenant create --set-default`; returns the tenant id.
    pub fn running_with_tenant(scratch: &Path) -> (Sediment, String) {
        ensure_pageserver_built();
        let sediment = Sediment::init(scratch);
        run_ok(&mut sediment.cmd(&["start"]));
        let created = sediment.json(&["tenant", "create", "--set-default"]);
        let tenant = created["tenant_id"].as_str().unwrap().to_owned();
        (sediment, tenant)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        remember_workdir(&self.workdir);
        let mut command = Command::new(sediment_exe());
        command
            .arg("--workdir")
            .arg(&self.workdir)
            .args(args)
            .env_remove("SEDIMENT_WORKDIR");
        command
    }

    /// Runs a command with `--json` that must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&run_ok(&mut self.cmd(&all))).unwrap()
    }

    /// Runs a command that must fail with one sentence on stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let stderr = run_fail(&mut self.cmd(args));
        assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
        stderr
    }

    /// `endpoint start NAME ARGS...`; returns its port.
    pub fn endpoint(&self, name: &str, args: &[&str]) -> u16 {
        let mut all = vec!["endpoint", "start", name];
        all.extend_from_slice(args);
        let started = self.json(&all);
        u16::try_from(started["port"].as_u64().unwrap()).unwrap()
    }

    /// Timeline id of a branch, from `timeline list`.
    pub fn timeline_id(&self, branch: &str) -> String {
        self.branch_info(branch)["timeline_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The `endpoint list` row of an endpoint.
    pub fn endpoint_info(&self, name: &str) -> Value {
        let list = self.json(&["endpoint", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|row| row["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {name} in {list}"))
    }

    /// The `timeline list` row of a branch.
    pub fn branch_info(&self, branch: &str) -> Value {
        let list = self.json(&["timeline", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|row| row["branch"] == branch)
            .cloned()
            .unwrap_or_else(|| panic!("no branch {branch} in {list}"))
    }

    pub fn api(&self) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", self.http_port),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .unwrap(),
        }
    }

    /// The pageserver's pid (from its pid file).
    pub fn pageserver_pid(&self) -> i32 {
        std::fs::read_to_string(self.workdir.join("pageserver/pageserver.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Stops every endpoint and the pageserver (best effort, for cleanup).
    pub fn shutdown(&self) {
        if let Ok(output) = self.cmd(&["--json", "endpoint", "list"]).output() {
            let list: Value = serde_json::from_slice(&output.stdout).unwrap_or(json!([]));
            for endpoint in list.as_array().into_iter().flatten() {
                let name = endpoint["name"].as_str().unwrap_or_default();
                let _ = self.cmd(&["endpoint", "stop", name]).output();
            }
        }
        let _ = self.cmd(&["stop"]).output();
    }
}

impl Drop for Sediment {
    fn drop(&mut self) {
        // Endpoints are stock postmasters that would outlive the test.
        for entry in std::fs::read_dir(self.workdir.join("endpoints"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(entry.path().join("pgdata"))
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        if let Ok(text) = std::fs::read_to_string(self.workdir.join("pageserver/pageserver.pid")) {
            // Only if the pid is still our pageserver (not a recycled pid).
            let ours = |pid: i32| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    String::from_utf8_lossy(&cmdline).contains(&*self.workdir.to_string_lossy())
                })
            };
            if let Some(pid) = text.trim().parse::<i32>().ok().filter(|pid| ours(*pid)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The management API, for what the CLI does not expose.
pub struct Api {
    base: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn send(&self, request: reqwest::blocking::RequestBuilder) -> (u16, Value) {
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
    }

    pub fn timeline(&self, tenant: &str, timeline: &str) -> Value {
        let (status, info) = self.get(&format!("/v1/tenant/{tenant}/timeline/{timeline}"));
        assert_eq!(status, 200, "{info}");
        info
    }

    /// Waits until the timeline's `last_record_lsn` is at least `lsn`.
    pub fn wait_ingested(&self, tenant: &str, timeline: &str, lsn: &str) -> Value {
        let target = lsn_value(lsn);
        let started = Instant::now();
        loop {
            let info = self.timeline(tenant, timeline);
            let head = lsn_value(info["last_record_lsn"].as_str().unwrap());
            if head >= target {
                return info;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "timeline {timeline} stuck at {} below {lsn}: {info}",
                info["last_record_lsn"]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// An LSN `X/Y` as a number, for comparisons.
pub fn lsn_value(lsn: &str) -> u64 {
    let (hi, lo) = lsn.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// psql (unaligned, tuples only, stop on error) against the endpoint on
/// 127.0.0.1:`port` with its password, the SQL fed on stdin so several
/// statements share one session.
pub fn psql(port: u16, sql: &str) -> String {
    psql_db(port, "postgres", sql)
}

pub fn psql_db(port: u16, db: &str, sql: &str) -> String {
    let mut command = client("psql", port);
    command.args(["-h", "127.0.0.1", "-U", "postgres", "-d", db]);
    run_psql(command, port, sql)
}

/// Runs `command` (psql with its connection set) on `sql` from stdin.
fn run_psql(mut command: Command, port: u16, sql: &str) -> String {
    use std::io::Write;
    let mut child = command
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-p", &port.to_string(), "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "psql on port {port} failed for {sql:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `pg_dump` of a database, without the per-run random `\restrict` key
/// lines newer pg_dump releases emit. `extra` are more pg_dump flags.
pub fn pg_dump(port: u16, db: &str, extra: &[&str]) -> String {
    let mut command = client("pg_dump", port);
    command.args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()]);
    dump_with(command, db, extra)
}

fn dump_with(mut command: Command, db: &str, extra: &[&str]) -> String {
    let dump = run_ok(command.args(extra).arg(db));
    dump.lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Postgres data directory started on a port; stopped on drop. Its
/// clients run as the Postgres OS user on its Unix socket (the base
/// backup's `pg_hba.conf` has `peer` there and passwords over TCP).
pub struct Postgres {
    pub pgdata: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn start(pgdata: &Path, port: u16) -> Postgres {
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

    /// A client program on the server's Unix socket, as the OS user.
    fn client(&self, tool: &str) -> Command {
        let mut command = as_postgres(&format!("{PG_BIN}/{tool}"));
        command
            .arg("-h")
            .arg(&self.pgdata)
            .args(["-U", "postgres", "-p", &self.port.to_string()]);
        command
    }

    pub fn psql(&self, sql: &str) -> String {
        let mut command = self.client("psql");
        command.args(["-d", "postgres"]);
        run_psql(command, self.port, sql)
    }

    /// `pg_dump` of the `postgres` database.
    pub fn dump(&self) -> String {
        dump_with(self.client("pg_dump"), "postgres", &[])
    }

    /// The catalog contents that pg_dump does not show for an empty database.
    pub fn catalog(&self) -> String {
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

/// Stock `pg_basebackup` of a timeline from the page service (`lsn`: None
/// for the head).
pub fn base_backup(pg_port: u16, tenant: &str, timeline: &str, lsn: Option<&str>, dest: &Path) {
    let lsn = lsn
        .map(|lsn| format!(" -c sediment.lsn={lsn}"))
        .unwrap_or_default();
    let connstr = format!(
        "host=127.0.0.1 port={pg_port} user=postgres dbname=postgres options='-c sediment.tenant={tenant} -c sediment.timeline={timeline}{lsn}'"
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
pub fn relation_files(pgdata: &Path) -> BTreeMap<String, Vec<u8>> {
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
