//! Postgres endpoints: stock PostgreSQL 15 servers whose data directory is a
//! base backup taken from the pageserver.
//!
//! - Read-only (`--lsn`): the base backup at that LSN, started with
//!   `default_transaction_read_only=on`; nothing flows back.
//! - Writable (no `--lsn`): the base backup at the branch head, started as a
//!   primary that streams its WAL to the pageserver (which connects as the
//!   synchronous standby `pageserver`), so every acknowledged commit is in
//!   the branch. At most one runs per timeline. Stopping it waits until the
//!   pageserver has ingested the shutdown checkpoint, then detaches the WAL
//!   source; starting it again builds a fresh data directory from the
//!   pageserver.
//!
//! Each endpoint lives in `<workdir>/endpoints/<name>/` (`pgdata/`,
//! `postgres.log`, the Unix socket and `endpoint.json`). Submodules:
//! [`config`] (settings written into the data directory), [`passwords`]
//! (every endpoint's `pg_hba.conf` — no `trust` — and its generated
//! passwords), [`pg`] (running Postgres programs as the unprivileged OS
//! user), [`wal_source`] (the pageserver's WAL receiver for a writable
//! endpoint), [`registration`] (telling the pageserver which endpoints run,
//! for the console and `list`).

mod config;
pub mod lazy;
mod passwords;
mod pg;
mod registration;
mod timings;
mod wal_source;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::output::Output;
use crate::workdir::Workdir;

const FIRST_PORT: u16 = 55432;
const STATE_FILE: &str = "endpoint.json";

/// `sediment endpoint ...`
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Start a Postgres endpoint on a branch: writable at the branch head, or
    /// read-only at an LSN with `--lsn`.
    Start {
        /// Endpoint name (letters, digits, `-`, `_`).
        name: String,
        /// Branch to serve.
        #[arg(long, default_value = "main")]
        branch_name: String,
        /// TCP port (default: the endpoint's previous port, else the first
        /// free one from 55432).
        #[arg(long)]
        port: Option<u16>,
        /// Serve the branch as of this LSN, read-only (like 0/16B9188).
        #[arg(long)]
        lsn: Option<String>,
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Write every page before starting (default: lazy — relation
        /// files are sparse and filled on first access, where the kernel
        /// supports it).
        #[arg(long)]
        full: bool,
    },
    /// Stop an endpoint (a writable one only after the pageserver has all
    /// its WAL).
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
    /// LSN of its base backup: where a read-only endpoint is frozen, where a
    /// writable one started writing.
    pub lsn: String,
    /// TCP port.
    pub port: u16,
    /// Data directory.
    pub pgdata: PathBuf,
    /// Whether it is a primary streaming WAL into its branch.
    #[serde(default)]
    pub writable: bool,
    /// Whether the pageserver was told to stream from it (and not yet told
    /// to stop).
    #[serde(default)]
    pub wal_source_attached: bool,
    /// Whether its relation files are filled on first access (lazy).
    #[serde(default)]
    pub lazy: bool,
    /// The superuser's password (generated at every start; absent only in
    /// state files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The pageserver's replication role's password (generated with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_password: Option<String>,
    /// Whether its postmaster is running (computed, not stored).
    #[serde(skip_deserializing, default)]
    pub running: bool,
}

impl EndpointState {
    /// Connection string for psql and friends.
    pub fn connstr(&self) -> String {
        match &self.password {
            Some(password) => format!(
                "postgresql://postgres:{password}@127.0.0.1:{}/postgres",
                self.port
            ),
            None => format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// One line for `status` and `list`.
    pub fn summary(&self) -> String {
        format!(
            "{}  {}  {}  port {}  {}  {}",
            self.name,
            if self.running { "running" } else { "stopped" },
            self.kind(),
            self.port,
            self.connstr(),
            self.fill_summary()
        )
    }

    /// How its data directory is filled: `full`, or the lazy mechanism
    /// and progress.
    fn fill_summary(&self) -> String {
        if !self.lazy {
            return "full".to_owned();
        }
        let dir = self.pgdata.parent().unwrap_or(Path::new("."));
        match lazy::progress(dir) {
            Some(p) => {
                let progress = format!(
                    "{} of {} pages filled, {} of {} files complete",
                    p.pages_total.saturating_sub(p.pages_remaining),
                    p.pages_total,
                    p.segments_total.saturating_sub(p.segments_remaining),
                    p.segments_total
                );
                match &p.last_error {
                    // Reads of the pages it could not fetch fail with EIO.
                    Some(error) => format!(
                        "lazy ({}): fill failed ({} fetches): {error}; {progress}",
                        p.mechanism, p.fetch_failures
                    ),
                    None => format!("lazy ({}): {progress}", p.mechanism),
                }
            }
            None => "lazy".to_owned(),
        }
    }

    fn kind(&self) -> String {
        if self.writable {
            format!("read-write on branch {} (from {})", self.branch, self.lsn)
        } else {
            format!("read-only on branch {} at {}", self.branch, self.lsn)
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        value["connstr"] = json!(self.connstr());
        if self.lazy {
            let dir = self.pgdata.parent().unwrap_or(Path::new("."));
            value["fill"] = serde_json::to_value(lazy::progress(dir)).unwrap_or(Value::Null);
        }
        value
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        let path = dir.join(STATE_FILE);
        crate::workdir::write_atomic(&path, &bytes).context("cannot write the endpoint state")?;
        // It may hold passwords.
        set_mode(&path, 0o600)
    }
}

/// What `endpoint start` was asked for.
struct StartRequest<'a> {
    name: &'a str,
    branch: &'a str,
    port: Option<u16>,
    lsn: Option<Lsn>,
    tenant_id: Option<&'a str>,
    full: bool,
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
            full,
        } => {
            let lsn = match &lsn {
                Some(text) => Some(
                    text.parse::<Lsn>()
                        .with_context(|| format!("--lsn {text:?}"))?,
                ),
                None => None,
            };
            let state = start(
                workdir,
                &StartRequest {
                    name: &name,
                    branch: &branch_name,
                    port,
                    lsn,
                    tenant_id: tenant_id.as_deref(),
                    full,
                },
            )?;
            out.print(
                &format!(
                    "endpoint {name} started ({}): {}",
                    state.kind(),
                    state.connstr()
                ),
                &state.to_json(),
            );
        }
        EndpointCommand::Stop { name, destroy } => {
            let ingested = stop(workdir, &name, destroy)?;
            let caught_up = ingested
                .map(|lsn| format!("; the pageserver has its WAL up to {lsn}"))
                .unwrap_or_default();
            out.print(
                &format!(
                    "endpoint {name} stopped{}{caught_up}",
                    if destroy { " and destroyed" } else { "" }
                ),
                &json!({"name": name, "stopped": true, "destroyed": destroy,
                        "last_record_lsn": ingested.map(|lsn| lsn.to_string())}),
            );
        }
        EndpointCommand::List => list(workdir, out),
    }
    Ok(())
}

/// `endpoint list`: the local endpoints, each marked with whether the
/// pageserver has it registered, then registrations no local endpoint
/// accounts for (JSON: the same objects, those with `"local": false`).
fn list(workdir: &Workdir, out: &Output) {
    let states = list_states(workdir);
    let registrations = ApiClient::for_workdir(workdir)
        .ok()
        .and_then(|client| registration::all(&client));
    let mut lines = Vec::new();
    let mut values = Vec::new();
    for state in &states {
        let registered = registrations
            .as_ref()
            .map(|all| registration::find(all, state).is_some());
        let mut line = state.summary();
        match registered {
            Some(false) if state.running => line.push_str("  (not registered with the pageserver)"),
            Some(true) if !state.running => {
                line.push_str("  (still registered with the pageserver)")
            }
            _ => {}
        }
        lines.push(line);
        let mut value = state.to_json();
        value["local"] = json!(true);
        value["registered"] = json!(registered);
        values.push(value);
    }
    for (tenant, infos) in registrations.iter().flatten() {
        for info in infos {
            let known = states.iter().any(|s| {
                s.name == info.name && &s.tenant_id == tenant && s.timeline_id == info.timeline_id
            });
            if known {
                continue;
            }
            let branch = workdir.config.branches.get(tenant).and_then(|names| {
                names
                    .iter()
                    .find(|(_, id)| **id == info.timeline_id)
                    .map(|(name, _)| name.as_str())
            });
            lines.push(registration::summary(info, branch));
            let mut value = serde_json::to_value(info).unwrap_or(Value::Null);
            value["local"] = json!(false);
            value["registered"] = json!(true);
            value["running"] = Value::Null;
            values.push(value);
        }
    }
    if registrations.is_none() && !states.is_empty() {
        lines.push("(the pageserver is not reachable: registrations unknown)".to_owned());
    }
    out.print(&lines.join("\n"), &Value::Array(values));
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

fn start(workdir: &Workdir, request: &StartRequest) -> anyhow::Result<EndpointState> {
    let mut phases = timings::Phases::new();
    let name = request.name;
    validate_name(name)?;
    let dir = workdir.endpoints_dir().join(name);
    let previous = read_state(&dir).ok();
    if let Some(previous) = &previous {
        if previous.running {
            bail!(
                "endpoint {name} is already running on port {}",
                previous.port
            );
        }
        if previous.wal_source_attached {
            bail!("endpoint {name} was not stopped cleanly; run `sediment endpoint stop {name}` first");
        }
    }
    let tenant = workdir.tenant(request.tenant_id)?;
    let timeline = workdir.branch_timeline(&tenant, request.branch)?;
    let writable = request.lsn.is_none();
    if writable {
        refuse_second_writer(workdir, &timeline, name)?;
    }
    phases.mark("resolve tenant and branch");
    let port = match request.port.or(previous.as_ref().map(|p| p.port)) {
        Some(port) => port,
        None => free_port(workdir, &[])?,
    };
    if dir.exists() {
        // A stopped endpoint starts again from a fresh base backup: its old
        // data directory may be behind (or, read-only, at another LSN).
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut state = EndpointState {
        name: name.to_owned(),
        tenant_id: tenant,
        branch: request.branch.to_owned(),
        timeline_id: timeline,
        lsn: request.lsn.map(|l| l.to_string()).unwrap_or_default(),
        port,
        pgdata: dir.join("pgdata"),
        writable,
        wal_source_attached: false,
        lazy: !request.full && lazy_available(),
        password: None,
        replication_password: None,
        running: false,
    };
    phases.mark("port and directory");
    let mut ports_taken_meanwhile = Vec::new();
    loop {
        let result = provision_and_start(workdir, &mut state, &dir, &mut phases);
        let Err(error) = result else { break };
        // Leave nothing half-made behind: a retry starts from scratch.
        let stopped = cleanup_failed_start(workdir, &state, &dir);
        // A port we chose (not one the user asked for) can be bound by
        // another program between our probe and Postgres's bind: take the
        // next free one rather than failing the start.
        if request.port.is_none()
            && stopped.is_ok()
            && port_was_taken(&error)
            && ports_taken_meanwhile.len() < PORT_ATTEMPTS
        {
            let taken = state.port;
            ports_taken_meanwhile.push(taken);
            state.port = free_port(workdir, &ports_taken_meanwhile)?;
            eprintln!(
                "note: port {taken} was taken before Postgres could bind it; trying {}",
                state.port
            );
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            continue;
        }
        return Err(match stopped {
            Ok(None) => error,
            // Postgres only says "Input/output error"; the fill process
            // kept the page service's message, which names the layer file
            // and key.
            Ok(Some(fill_error)) => error.context(format!(
                "the lazy fill could not fetch a page: {fill_error}"
            )),
            Err(cleanup) => error.context(format!("cleaning up also failed: {cleanup:#}")),
        });
    }
    state.running = true;
    if let Ok(client) = ApiClient::for_workdir(workdir) {
        registration::register(&client, &state);
    }
    Ok(state)
}

/// Lazy endpoints need fanotify pre-content events; without them the data
/// directory is materialised as with `--full`, and we say so.
fn lazy_available() -> bool {
    match lazy::unavailable_reason() {
        None => true,
        Some(reason) => {
            eprintln!(
                "note: lazy endpoints are unavailable here ({reason}); writing every page instead"
            );
            false
        }
    }
}

/// One writable endpoint per timeline: two primaries would write diverging
/// WAL into the same branch. (The pageserver's 409 for a second WAL source
/// is the second line of defence.)
fn refuse_second_writer(workdir: &Workdir, timeline: &str, name: &str) -> anyhow::Result<()> {
    if let Some(other) = list_states(workdir)
        .into_iter()
        .find(|s| s.writable && s.running && s.timeline_id == timeline && s.name != name)
    {
        bail!(
            "endpoint {} is already running read-write on branch {}; stop it first, or pass --lsn for a read-only endpoint",
            other.name,
            other.branch
        );
    }
    Ok(())
}

fn provision_and_start(
    workdir: &Workdir,
    state: &mut EndpointState,
    dir: &Path,
    phases: &mut timings::Phases,
) -> anyhow::Result<()> {
    let pg = pg::PgUser::new()?;
    let client = ApiClient::for_workdir(workdir)?;
    let mode = if state.writable {
        let status = client.get("/v1/status")?;
        config::Mode::Writable {
            wal_consistency_checking: config::wal_consistency_checking(&status),
        }
    } else {
        config::Mode::ReadOnly
    };
    let lsn = (!state.lsn.is_empty()).then_some(state.lsn.as_str());
    phases.mark("pageserver status");
    let progress = crate::output::Progress::spinner(format!(
        "endpoint {}: {} base backup",
        state.name,
        if state.lazy { "lazy" } else { "full" }
    ));
    if state.lazy {
        lazy::provision(workdir, state, dir)?;
    } else {
        crate::basebackup::fetch(
            workdir,
            &state.tenant_id,
            &state.timeline_id,
            lsn,
            &state.pgdata,
        )?;
    }
    phases.mark(if state.lazy {
        "lazy base backup and skeleton"
    } else {
        "full base backup"
    });
    config::append_postgresql_conf(
        &state.pgdata,
        &config::postgresql_conf(&state.name, state.port, dir, &mode),
    )?;
    // Every endpoint gets fresh passwords and an hba without `trust`.
    passwords::write_hba(&state.pgdata, &pg.name()?)?;
    let superuser = passwords::generate();
    let replication = passwords::generate();
    state.password = Some(superuser.clone());
    state.replication_password = Some(replication.clone());
    // Postgres insists its data directory is private to its owner.
    set_mode(&state.pgdata, 0o700)?;
    pg.give(dir)?;
    if state.writable {
        // The base backup's pg_control points at the checkpoint we start from.
        state.lsn = pg::control_data(workdir, &pg, &state.pgdata)?
            .checkpoint
            .to_string();
    }
    state.save(dir)?;
    phases.mark("config, ownership, control data");
    progress.set_message(format!("endpoint {}: starting postgres", state.name));
    start_postgres(workdir, &pg, state, dir)?;
    phases.mark("postgres accepting connections");
    passwords::set_passwords(workdir, &pg, dir, state.port, &superuser, &replication)?;
    phases.mark("passwords");
    if state.writable {
        let source = wal_source::Source {
            port: state.port,
            replication_password: &replication,
        };
        wal_source::attach(&client, &state.tenant_id, &state.timeline_id, &source).context(
            "the pageserver cannot stream from the new endpoint, so it was stopped again",
        )?;
        state.wal_source_attached = true;
        state.save(dir)?;
        phases.mark("WAL source attached");
        progress.set_message(format!(
            "endpoint {}: waiting for the pageserver to stream",
            state.name
        ));
        if let Err(error) = wal_source::wait_streaming(workdir, state.port) {
            // Undo the attach too: nothing will stream from this endpoint.
            let _ = wal_source::detach(&client, &state.tenant_id, &state.timeline_id);
            state.wal_source_attached = false;
            return Err(error);
        }
        phases.mark("pageserver streaming (sync)");
    }
    Ok(())
}

/// Starts the endpoint's Postgres: through the fill process when lazy
/// (Postgres must never run on holes without it), with `pg_ctl` otherwise.
fn start_postgres(
    workdir: &Workdir,
    pg: &pg::PgUser,
    state: &EndpointState,
    dir: &Path,
) -> anyhow::Result<()> {
    if state.lazy {
        lazy::start(state, dir)
    } else {
        pg::start(workdir, pg, &state.pgdata, &dir.join("postgres.log"))
    }
}

/// Stops what a failed start left running and removes the endpoint's
/// directory; returns the lazy fill's last fetch error, if it had one.
fn cleanup_failed_start(
    workdir: &Workdir,
    state: &EndpointState,
    dir: &Path,
) -> anyhow::Result<Option<String>> {
    if pg::is_running(&state.pgdata) {
        pg::stop_fast(workdir, &pg::PgUser::new()?, &state.pgdata)?;
    }
    let mut fill_error = None;
    if state.lazy {
        lazy::wait_fill_process_exit(dir);
        fill_error = lazy::progress(dir).and_then(|p| p.last_error);
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(fill_error)
}

/// Stops an endpoint; for a writable one returns the pageserver's ingested
/// head once it holds the endpoint's shutdown checkpoint.
fn stop(workdir: &Workdir, name: &str, destroy: bool) -> anyhow::Result<Option<Lsn>> {
    validate_name(name)?;
    let dir = workdir.endpoints_dir().join(name);
    let mut state = read_state(&dir).with_context(|| format!("no endpoint named {name}"))?;
    let pg = pg::PgUser::new()?;
    if state.running {
        pg::stop_fast(workdir, &pg, &state.pgdata)?;
    }
    if state.lazy {
        lazy::wait_fill_process_exit(&dir);
    }
    let mut ingested = None;
    if state.wal_source_attached {
        ingested = detach_after_catch_up(workdir, &pg, &state)?;
        state.wal_source_attached = false;
        state.save(&dir)?;
    }
    // Also when it was not running (it died): its registration is stale.
    if let Ok(client) = ApiClient::for_workdir(workdir) {
        registration::unregister(&client, &state);
    }
    if destroy {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(ingested)
}

/// Waits until the pageserver has ingested the stopped endpoint's shutdown
/// checkpoint, then detaches the WAL source.
fn detach_after_catch_up(
    workdir: &Workdir,
    pg: &pg::PgUser,
    state: &EndpointState,
) -> anyhow::Result<Option<Lsn>> {
    let client = ApiClient::for_workdir(workdir)?;
    // The data directory may be gone or torn (its host crashed: it runs
    // with fsync off); nothing in it is needed then, see below.
    let control = pg::control_data(workdir, pg, &state.pgdata);
    let ingested = match control {
        Ok(control) if control.is_shut_down() => {
            Some(catch_up(workdir, pg, &client, state, control.checkpoint)?)
        }
        // Killed or crashed: there is no final checkpoint to wait for. Every
        // acknowledged commit is in the pageserver already (synchronous
        // standby); what was never acknowledged may be lost.
        unclean => {
            let how = match unclean {
                Ok(control) => format!("cluster state {:?}", control.state),
                Err(error) => format!("its pg_control is unreadable: {error:#}"),
            };
            eprintln!(
                "warning: endpoint {} did not shut down cleanly ({how}); only acknowledged commits are guaranteed to be in branch {}",
                state.name, state.branch
            );
            None
        }
    };
    wal_source::detach(&client, &state.tenant_id, &state.timeline_id)?;
    Ok(ingested)
}

/// How long a stop first waits for the pageserver before assuming it missed
/// the end of the stream.
const FIRST_CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until the pageserver holds the record at `checkpoint`. If it does
/// not arrive, the pageserver most likely was not connected when the
/// endpoint shut down (the walsender hands WAL over only to a connected
/// standby); the WAL is still in the endpoint's `pg_wal`, so the postmaster
/// runs once more until the pageserver streams again, then stops again.
fn catch_up(
    workdir: &Workdir,
    pg: &pg::PgUser,
    client: &ApiClient,
    state: &EndpointState,
    checkpoint: Lsn,
) -> anyhow::Result<Lsn> {
    let (tenant, timeline) = (&state.tenant_id, &state.timeline_id);
    if let Some(head) =
        wal_source::wait_ingested(client, tenant, timeline, checkpoint, FIRST_CATCH_UP_WAIT)?
    {
        return Ok(head);
    }
    eprintln!(
        "note: the pageserver has not received endpoint {}'s last WAL; running it once more to hand that over",
        state.name
    );
    let dir = state.pgdata.parent().unwrap_or(Path::new("."));
    start_postgres(workdir, pg, state, dir)?;
    let streamed = wal_source::wait_streaming(workdir, state.port);
    pg::stop_fast(workdir, pg, &state.pgdata)?;
    streamed?;
    let control = pg::control_data(workdir, pg, &state.pgdata)?;
    let timeout = wal_source::catch_up_timeout();
    wal_source::wait_ingested(client, tenant, timeline, control.checkpoint, timeout)?
        .ok_or_else(|| wal_source::not_caught_up("after a second run", control.checkpoint, timeout))
}

fn read_state(dir: &Path) -> anyhow::Result<EndpointState> {
    let bytes = std::fs::read(dir.join(STATE_FILE))?;
    let mut state: EndpointState = serde_json::from_slice(&bytes)?;
    state.running = pg::is_running(&state.pgdata);
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

/// How many ports an endpoint start tries when the ones it picked are bound
/// by someone else before Postgres binds them.
const PORT_ATTEMPTS: usize = 5;

/// The first port from [`FIRST_PORT`] that no endpoint of this work
/// directory uses, that is not in `skip`, and that is free right now.
fn free_port(workdir: &Workdir, skip: &[u16]) -> anyhow::Result<u16> {
    let taken: Vec<u16> = list_states(workdir).iter().map(|s| s.port).collect();
    (FIRST_PORT..FIRST_PORT + 1000)
        .find(|port| {
            !taken.contains(port)
                && !skip.contains(port)
                && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .context("no free port from 55432 on")
}

/// Whether a failed start failed because Postgres could not bind its port
/// (its log says so; the message is quoted into our error).
fn port_was_taken(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("could not bind IPv4 address") && text.contains("Address already in use")
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Starts a read-only endpoint `name` on `branch` at `lsn` (lazy where the
/// kernel allows), for tools that need a past state (`table restore`).
pub(crate) fn start_read_only(
    workdir: &Workdir,
    name: &str,
    branch: &str,
    tenant_id: Option<&str>,
    lsn: Lsn,
) -> anyhow::Result<EndpointState> {
    start(
        workdir,
        &StartRequest {
            name,
            branch,
            port: None,
            lsn: Some(lsn),
            tenant_id,
            full: false,
        },
    )
}

/// Stops endpoint `name` and deletes its directory.
/// After `tenant attach`: the running writable endpoints of this work
/// directory on the tenant stream into the attached timelines again, from
/// their recovered heads (until then their commits wait for a standby that
/// is gone). Returns the endpoints resumed, and those that could not be
/// with the reason.
pub(crate) fn resume_streaming(
    workdir: &Workdir,
    client: &ApiClient,
    tenant_id: &str,
) -> (Vec<String>, Vec<(String, anyhow::Error)>) {
    let (mut resumed, mut failed) = (Vec::new(), Vec::new());
    for state in list_states(workdir) {
        if !(state.running && state.writable && state.wal_source_attached)
            || state.tenant_id != tenant_id
        {
            continue;
        }
        let Some(replication_password) = state.replication_password.as_deref() else {
            failed.push((
                state.name.clone(),
                anyhow::anyhow!("its state holds no replication password"),
            ));
            continue;
        };
        let source = wal_source::Source {
            port: state.port,
            replication_password,
        };
        match wal_source::resume(client, &state.tenant_id, &state.timeline_id, &source) {
            Ok(()) => resumed.push(state.name),
            Err(error) => failed.push((state.name, error)),
        }
    }
    (resumed, failed)
}

pub(crate) fn stop_and_destroy(workdir: &Workdir, name: &str) -> anyhow::Result<()> {
    stop(workdir, name, true).map(drop)
}

/// Runs SQL on an endpoint's `postgres` database (see [`pg::query`]).
pub(crate) fn query(workdir: &Workdir, port: u16, sql: &str) -> anyhow::Result<String> {
    pg::query(workdir, port, sql)
}

/// The password file clients use to reach endpoints.
pub(crate) fn pgpass_file(workdir: &Workdir) -> PathBuf {
    passwords::pgpass_file(workdir)
}
