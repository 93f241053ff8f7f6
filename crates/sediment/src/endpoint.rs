//! Postgres endpoints: stock PostgreSQL 15 servers whose data directory is a
//! base backup taken from the pageserver at an LSN.
//!
//! Read-only endpoints only (`--lsn`): the base backup is fetched with stock
//! `pg_basebackup` from the page service, unpacked into
//! `<workdir>/endpoints/<name>/pgdata`, configured (port, socket directory,
//! `default_transaction_read_only=on`) and started with `pg_ctl`, as the
//! unprivileged OS user when we are root. Read-write endpoints need the WAL
//! receiver, which streams their WAL back into the branch.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Subcommand;
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::output::Output;
use crate::workdir::Workdir;

const FIRST_PORT: u16 = 55432;
const STATE_FILE: &str = "endpoint.json";

/// `sediment endpoint ...`
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Start a Postgres endpoint on a branch.
    Start {
        /// Endpoint name (letters, digits, `-`, `_`).
        name: String,
        /// Branch to serve.
        #[arg(long, default_value = "main")]
        branch_name: String,
        /// TCP port (default: the first free one from 55432).
        #[arg(long)]
        port: Option<u16>,
        /// Serve the branch as of this LSN, read-only (like 0/16B9188).
        #[arg(long)]
        lsn: Option<String>,
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
    },
    /// Stop an endpoint.
    Stop {
        /// Endpoint name.
        name: String,
        /// Also delete its data directory.
        #[arg(long)]
        destroy: bool,
    },
    /// List endpoints.
    List,
}

/// What `endpoint.json` records about an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointState {
    /// Its name.
    pub name: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Branch name.
    pub branch: String,
    /// Timeline id.
    pub timeline_id: String,
    /// LSN it is frozen at.
    pub lsn: String,
    /// TCP port.
    pub port: u16,
    /// Data directory.
    pub pgdata: PathBuf,
    /// Whether its postmaster is running (computed, not stored).
    #[serde(skip_deserializing, default)]
    pub running: bool,
}

impl EndpointState {
    /// Connection string for psql and friends.
    pub fn connstr(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// One line for `status` and `list`.
    pub fn summary(&self) -> String {
        format!(
            "{}  {}  branch {} at {}  port {}  {}",
            self.name,
            if self.running { "running" } else { "stopped" },
            self.branch,
            self.lsn,
            self.port,
            self.connstr()
        )
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        value["connstr"] = json!(self.connstr());
        value
    }
}

/// Runs an endpoint command.
pub fn run(workdir: &Workdir, command: EndpointCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        EndpointCommand::Start {
            name,
            branch_name,
            port,
            lsn,
            tenant_id,
        } => {
            let state = start(
                workdir,
                &name,
                &branch_name,
                port,
                lsn.as_deref(),
                tenant_id.as_deref(),
            )?;
            out.print(
                &format!(
                    "endpoint {name} started (read-only at {}): {}",
                    state.lsn,
                    state.connstr()
                ),
                &state.to_json(),
            );
        }
        EndpointCommand::Stop { name, destroy } => {
            stop(workdir, &name, destroy)?;
            out.print(
                &format!(
                    "endpoint {name} stopped{}",
                    if destroy { " and destroyed" } else { "" }
                ),
                &json!({"name": name, "stopped": true, "destroyed": destroy}),
            );
        }
        EndpointCommand::List => {
            let states = list_states(workdir);
            let text = states
                .iter()
                .map(EndpointState::summary)
                .collect::<Vec<_>>()
                .join("\n");
            out.print(
                &text,
                &Value::Array(states.iter().map(EndpointState::to_json).collect()),
            );
        }
    }
    Ok(())
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!("endpoint name {name:?} must be 1-63 letters, digits, '-' or '_'");
    }
    Ok(())
}

fn start(
    workdir: &Workdir,
    name: &str,
    branch: &str,
    port: Option<u16>,
    lsn: Option<&str>,
    tenant_id: Option<&str>,
) -> anyhow::Result<EndpointState> {
    validate_name(name)?;
    let Some(lsn) = lsn else {
        bail!("read-write endpoints need the WAL receiver, which is not available yet; pass --lsn LSN for a read-only endpoint");
    };
    let lsn: Lsn = lsn.parse().with_context(|| format!("--lsn {lsn:?}"))?;
    let dir = workdir.endpoints_dir().join(name);
    if dir.join(STATE_FILE).exists() {
        bail!("endpoint {name} already exists; stop it with --destroy first");
    }
    let tenant = workdir.tenant(tenant_id)?;
    let timeline = workdir.branch_timeline(&tenant, branch)?;
    let port = match port {
        Some(port) => port,
        None => free_port(workdir)?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let state = EndpointState {
        name: name.to_owned(),
        tenant_id: tenant.clone(),
        branch: branch.to_owned(),
        timeline_id: timeline.clone(),
        lsn: lsn.to_string(),
        port,
        pgdata: dir.join("pgdata"),
        running: false,
    };
    let result = provision_and_start(workdir, &state, &dir);
    if result.is_err() {
        // Leave nothing half-made behind: a retry starts from scratch.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    Ok(EndpointState {
        running: true,
        ..state
    })
}

fn provision_and_start(workdir: &Workdir, state: &EndpointState, dir: &Path) -> anyhow::Result<()> {
    let pg = PgUser::new(workdir)?;
    crate::basebackup::fetch(
        workdir,
        &state.tenant_id,
        &state.timeline_id,
        &state.lsn,
        &state.pgdata,
    )?;
    let conf = format!(
        "\n# Added by sediment for endpoint {name}\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\ndefault_transaction_read_only = on\n",
        name = state.name,
        port = state.port,
        dir = dir.display()
    );
    let conf_path = state.pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf_path).unwrap_or_default();
    text.push_str(&conf);
    std::fs::write(&conf_path, text)
        .with_context(|| format!("cannot write {}", conf_path.display()))?;
    // Postgres insists its data directory is private to its owner.
    set_mode(&state.pgdata, 0o700)?;
    pg.give(dir)?;
    let bytes = serde_json::to_vec_pretty(state)?;
    std::fs::write(dir.join(STATE_FILE), bytes).context("cannot write the endpoint state")?;
    pg.run(
        Command::new(workdir.config.pg_bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(&state.pgdata)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-w", "-t", "120", "start"]),
        "pg_ctl start",
    )
    .with_context(|| format!("see {}", dir.join("postgres.log").display()))
}

fn stop(workdir: &Workdir, name: &str, destroy: bool) -> anyhow::Result<()> {
    validate_name(name)?;
    let dir = workdir.endpoints_dir().join(name);
    let state = read_state(&dir).with_context(|| format!("no endpoint named {name}"))?;
    if is_running(&state.pgdata) {
        let pg = PgUser::new(workdir)?;
        pg.run(
            Command::new(workdir.config.pg_bin_dir.join("pg_ctl"))
                .arg("-D")
                .arg(&state.pgdata)
                .args(["-m", "fast", "-w", "-t", "120", "stop"]),
            "pg_ctl stop",
        )?;
    }
    if destroy {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

fn read_state(dir: &Path) -> anyhow::Result<EndpointState> {
    let bytes = std::fs::read(dir.join(STATE_FILE))?;
    let mut state: EndpointState = serde_json::from_slice(&bytes)?;
    state.running = is_running(&state.pgdata);
    Ok(state)
}

/// Every endpoint of the work directory, sorted by name.
pub fn list_states(workdir: &Workdir) -> Vec<EndpointState> {
    let Ok(entries) = std::fs::read_dir(workdir.endpoints_dir()) else {
        return Vec::new();
    };
    let mut states: Vec<EndpointState> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| read_state(&entry.path()).ok())
        .collect();
    states.sort_by(|a, b| a.name.cmp(&b.name));
    states
}

/// Whether `postmaster.pid` names a live process.
fn is_running(pgdata: &Path) -> bool {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

fn free_port(workdir: &Workdir) -> anyhow::Result<u16> {
    let taken: Vec<u16> = list_states(workdir).iter().map(|s| s.port).collect();
    (FIRST_PORT..FIRST_PORT + 1000)
        .find(|port| {
            !taken.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .context("no free port from 55432 on")
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Runs Postgres programs as the configured OS user when we are root
/// (Postgres refuses to run as root), directly otherwise.
pub struct PgUser {
    user: Option<nix::unistd::User>,
}

impl PgUser {
    /// Resolves the OS user from the config.
    pub fn new(workdir: &Workdir) -> anyhow::Result<PgUser> {
        if !nix::unistd::Uid::effective().is_root() {
            return Ok(PgUser { user: None });
        }
        let name = &workdir.config.pg_os_user;
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .with_context(|| {
                format!("OS user {name:?} does not exist (Postgres refuses to run as root)")
            })?;
        Ok(PgUser { user: Some(user) })
    }

    /// Hands `dir` (recursively) to the Postgres user.
    pub fn give(&self, dir: &Path) -> anyhow::Result<()> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", user.uid, user.gid))
            .arg(dir)
            .status()
            .context("cannot run chown")?;
        if !status.success() {
            bail!("chown of {} failed", dir.display());
        }
        // The user must also be able to reach the directory.
        let reachable = Command::new("runuser")
            .args(["-u", &user.name, "--", "test", "-x"])
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

    /// Runs `command` (as the Postgres user when root); fails with its stderr.
    pub fn run(&self, command: &mut Command, what: &str) -> anyhow::Result<()> {
        let mut actual = match &self.user {
            Some(user) => {
                let mut wrapped = Command::new("runuser");
                wrapped
                    .args(["-u", &user.name, "--"])
                    .arg(command.get_program())
                    .args(command.get_args());
                wrapped
            }
            None => std::mem::replace(command, Command::new("true")),
        };
        let output = actual
            .output()
            .with_context(|| format!("cannot run {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}
