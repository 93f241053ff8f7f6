//! `init`, `start`, `stop`, `status`, and the `tenant` and `timeline` commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use postgres_wal::Lsn;
use serde_json::{json, Map, Value};

use api_types::{GcSummary, TenantInfo, TimelineCreateRequest, TimelineInfo};

use crate::client::{refused_status, ApiClient};
use crate::daemon;
use crate::output::{human_size, Output, Progress};
use crate::workdir::{self, CliConfig, PageserverSettings, Workdir};

/// Where Debian installs PostgreSQL 15.
const DEBIAN_PG15_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Arguments of `sediment init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory with the PostgreSQL 15 binaries (found automatically if omitted).
    #[arg(long)]
    pg_bin: Option<PathBuf>,
    /// Port of the pageserver management API.
    #[arg(long, default_value_t = 9898)]
    http_port: u16,
    /// Port of the pageserver page service.
    #[arg(long, default_value_t = 64000)]
    pg_port: u16,
    /// Remote storage: `s3://bucket/prefix` (endpoint, region and keys from
    /// the AWS_* environment variables) or a local directory; default
    /// `<workdir>/pageserver/remote`.
    #[arg(long, value_name = "URL")]
    remote_storage: Option<String>,
    /// Generate a key pair and require JWTs on the pageserver (the CLI signs its own).
    #[arg(long)]
    auth: bool,
    /// Generate a CA and certificate and serve the pageserver over TLS.
    #[arg(long)]
    tls: bool,
}

/// `sediment tenant ...`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first timeline (branch `main`, from initdb).
    Create {
        /// Tenant id (32 hex digits); generated when omitted.
        #[arg(long)]
        tenant_id: Option<String>,
        /// Make it the default tenant of later commands.
        #[arg(long)]
        set_default: bool,
        /// Tenant setting, `key=value` (as in TenantConfig); repeatable.
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// List tenants with their attachment status and generation.
    List,
    /// Attach a tenant from remote storage; waits until it is attached.
    Attach {
        /// Tenant id (32 hex digits).
        tenant_id: String,
        /// Attachment generation; must be newer than any earlier attachment.
        #[arg(long, default_value_t = 1)]
        generation: u32,
        /// Make it the default tenant of later commands.
        #[arg(long)]
        set_default: bool,
    },
    /// Detach a tenant (its remote data stays).
    Detach {
        /// Tenant id (32 hex digits).
        tenant_id: String,
    },
    /// Delete a tenant with all its branches; waits until it is gone.
    /// Refused while a writable endpoint of it runs.
    Delete {
        /// Tenant id (32 hex digits).
        tenant_id: String,
    },
    /// Show or change a tenant's settings.
    #[command(subcommand)]
    Config(TenantConfigCommand),
}

/// `sediment tenant config ...`
#[derive(Debug, Subcommand)]
pub enum TenantConfigCommand {
    /// Show the tenant's own settings and the effective ones.
    Get {
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
    },
    /// Change settings (`key=value`; `key=` removes the override); the
    /// other overrides stay.
    Set {
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Tenant setting, `key=value` (as in TenantConfig); repeatable.
        #[arg(
            short = 'c',
            long = "config",
            value_name = "KEY=VALUE",
            required = true
        )]
        config: Vec<String>,
    },
}

/// `sediment timeline ...`
#[derive(Debug, Subcommand)]
pub enum TimelineCommand {
    /// Show the branch tree of a tenant.
    List {
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
    },
    /// Create a branch.
    Branch {
        /// Name of the new branch.
        #[arg(long)]
        branch_name: String,
        /// Branch to fork from.
        #[arg(long, default_value = "main")]
        ancestor_branch_name: String,
        /// Branch point (like 0/16B9188); default: the ancestor's head.
        #[arg(long, conflicts_with = "at")]
        ancestor_start_lsn: Option<String>,
        /// Branch point as a time (like '2026-11-21 10:00:00+00' or
        /// 2026-11-21T10:00:00Z): the branch then holds every transaction
        /// the ancestor committed up to that moment.
        #[arg(long, value_name = "TIMESTAMP")]
        at: Option<String>,
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
    },
    /// Which relations were created, dropped, truncated or changed between
    /// two points of a branch, with pages and bytes.
    Diff(crate::history::diff::DiffArgs),
    /// Delete a branch. Refused while it has child branches or a running
    /// writable endpoint.
    Delete {
        /// Branch name.
        name: String,
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
    },
    /// Garbage-collect a branch now with the tenant's retention settings
    /// (gc_horizon, pitr_interval) and report what was removed.
    Gc {
        /// Branch name.
        name: String,
        /// Tenant (default: the default tenant).
        #[arg(long)]
        tenant_id: Option<String>,
    },
}

/// `sediment init`.
pub fn init(path: &Path, args: InitArgs, out: &Output) -> anyhow::Result<()> {
    if path.join(workdir::CONFIG_FILE).exists() {
        bail!("{} is already initialised", path.display());
    }
    let pg_bin_dir = find_pg_bin(args.pg_bin)?;
    let config = CliConfig {
        pg_bin_dir: pg_bin_dir.clone(),
        legacy_pg_os_user: None,
        pageserver: PageserverSettings {
            http_addr: format!("127.0.0.1:{}", args.http_port),
            pg_addr: format!("127.0.0.1:{}", args.pg_port),
        },
        default_tenant: None,
        branches: BTreeMap::new(),
        security: None,
    };
    let pageserver_dir = path.join("pageserver");
    std::fs::create_dir_all(&pageserver_dir)
        .with_context(|| format!("cannot create {}", pageserver_dir.display()))?;
    std::fs::create_dir_all(path.join("endpoints"))
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut pageserver_toml = toml::Table::new();
    pageserver_toml.insert(
        "listen_http_addr".into(),
        config.pageserver.http_addr.clone().into(),
    );
    pageserver_toml.insert(
        "listen_pg_addr".into(),
        config.pageserver.pg_addr.clone().into(),
    );
    pageserver_toml.insert("pg_bin_dir".into(), pg_bin_dir.display().to_string().into());
    if let Some(url) = &args.remote_storage {
        remote_storage::RemoteConfig::parse(url)?;
        pageserver_toml.insert("remote_storage".into(), url.clone().into());
    }
    let mut config = config;
    config.security = crate::security::init(path, args.auth, args.tls, &mut pageserver_toml)?;
    workdir::write_atomic(
        &pageserver_dir.join("pageserver.toml"),
        toml::to_string(&pageserver_toml)?.as_bytes(),
    )?;
    workdir::write_config(path, &config)?;
    out.print(
        &format!(
            "initialised {} (PostgreSQL binaries: {}, pageserver http {}, page service {})",
            path.display(),
            pg_bin_dir.display(),
            config.pageserver.http_addr,
            config.pageserver.pg_addr
        ),
        &json!({"workdir": path, "pg_bin_dir": pg_bin_dir, "pageserver": config.pageserver.http_addr, "page_service": config.pageserver.pg_addr}),
    );
    Ok(())
}

/// Attaches and polls `attachment_status` until `attached` or `failed`.
fn attach_tenant(client: &ApiClient, tenant_id: &str, generation: u32) -> anyhow::Result<()> {
    client.post(
        &format!("/v1/tenant/{tenant_id}/attach"),
        &api_types::TenantAttachRequest {
            config: api_types::TenantConfig::new(),
            generation: Some(generation),
        },
    )?;
    let _progress = Progress::spinner(format!("attaching tenant {tenant_id}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    loop {
        let info: TenantInfo = client.get_as(&format!("/v1/tenant/{tenant_id}"))?;
        match info.attachment_status.slug.as_str() {
            "attached" => return Ok(()),
            "failed" => bail!(
                "attaching tenant {tenant_id} failed: {}",
                info.attachment_status
                    .data
                    .reason
                    .as_deref()
                    .unwrap_or("no reason given")
            ),
            _ if std::time::Instant::now() > deadline => {
                bail!("tenant {tenant_id} is still attaching after an hour")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

fn find_pg_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let candidate = match given {
        Some(dir) => dir,
        None => {
            let from_pg_config = std::process::Command::new("pg_config")
                .arg("--bindir")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            [Some(PathBuf::from(DEBIAN_PG15_BIN)), from_pg_config]
                .into_iter()
                .flatten()
                .find(|dir| is_pg15(dir))
                .context("PostgreSQL 15 binaries not found; pass --pg-bin DIR")?
        }
    };
    if !is_pg15(&candidate) {
        bail!(
            "{} does not hold PostgreSQL 15 binaries (initdb --version)",
            candidate.display()
        );
    }
    Ok(candidate)
}

fn is_pg15(dir: &Path) -> bool {
    std::process::Command::new(dir.join("initdb"))
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(" 15."))
        .unwrap_or(false)
}

/// `sediment start`.
pub fn start(workdir: &Workdir, out: &Output) -> anyhow::Result<()> {
    let pid = daemon::start(workdir)?;
    out.print(
        &format!(
            "pageserver started (pid {pid}): http {}, page service {}",
            workdir.config.pageserver.http_addr, workdir.config.pageserver.pg_addr
        ),
        &json!({"pid": pid, "http": workdir.config.pageserver.http_addr, "page_service": workdir.config.pageserver.pg_addr}),
    );
    Ok(())
}

/// `sediment stop`.
pub fn stop(workdir: &Workdir, out: &Output) -> anyhow::Result<()> {
    // Endpoints keep running (they are the user's databases), but a
    // writable one cannot commit without its synchronous standby: say so.
    for endpoint in crate::endpoint::list_states(workdir) {
        if endpoint.writable && endpoint.running {
            eprintln!(
                "warning: writable endpoint {} keeps running; its commits wait until the pageserver is started again",
                endpoint.name
            );
        }
    }
    match daemon::stop(workdir)? {
        Some(pid) => out.print(
            &format!("pageserver stopped (pid {pid})"),
            &json!({"stopped": pid.as_raw()}),
        ),
        None => out.print("the pageserver is not running", &json!({"stopped": null})),
    }
    Ok(())
}

/// `sediment status`.
pub fn status(workdir: &Workdir, out: &Output) -> anyhow::Result<()> {
    let pid = daemon::running_pid(workdir);
    let client = ApiClient::for_workdir(workdir)?;
    let answering = pid.is_some() && client.is_up();
    let endpoints = crate::endpoint::list_states(workdir);
    let mut text = match pid {
        Some(pid) => format!(
            "pageserver: running (pid {pid}{}), http {}, page service {}",
            if answering { "" } else { ", not answering" },
            workdir.config.pageserver.http_addr,
            workdir.config.pageserver.pg_addr
        ),
        None => "pageserver: stopped".to_owned(),
    };
    // What the pageserver says about itself (`/v1/status`).
    let server_status: Option<api_types::StatusResponse> = if answering {
        client.get_as("/v1/status").ok()
    } else {
        None
    };
    if let Some(server) = &server_status {
        text.push_str(&status_text(server));
    }
    if let Some(tenant) = &workdir.config.default_tenant {
        text.push_str(&format!("\ndefault tenant: {tenant}"));
    }
    // Sizes come from the pageserver; without it there are none to show.
    let mut tenants_json = Vec::new();
    if answering {
        let tenants: Vec<TenantInfo> = client.get_as("/v1/tenant")?;
        for tenant in tenants {
            let timelines: Vec<TimelineInfo> = client
                .get_as(&format!("/v1/tenant/{}/timeline", tenant.id))
                .unwrap_or_default();
            let names = workdir
                .config
                .branches
                .get(&tenant.id)
                .cloned()
                .unwrap_or_default();
            let logical: Option<u64> = timelines
                .iter()
                .map(|t| t.current_logical_size)
                .sum::<Option<u64>>();
            text.push_str(&format!(
                "\ntenant {}  {}  physical {}  {} branch{}",
                tenant.id,
                tenant.attachment_status.slug,
                human_size(Some(tenant.current_physical_size)),
                timelines.len(),
                if timelines.len() == 1 { "" } else { "es" }
            ));
            let rows = branch_rows(&timelines, &names);
            for row in &rows {
                text.push_str(&format!("\n  {}", row.text));
            }
            tenants_json.push(json!({
                "tenant_id": tenant.id,
                "attachment_status": tenant.attachment_status.slug,
                "current_physical_size": tenant.current_physical_size,
                "logical_size_sum": logical,
                "timelines": rows.into_iter().map(|r| r.json).collect::<Vec<_>>(),
            }));
        }
    }
    for endpoint in &endpoints {
        text.push_str(&format!("\nendpoint {}", endpoint.summary()));
    }
    out.print(
        &text,
        &json!({
            "pageserver": {"running": pid.is_some(), "pid": pid.map(|p| p.as_raw()), "answering": answering,
                           "http": workdir.config.pageserver.http_addr, "page_service": workdir.config.pageserver.pg_addr,
                           "status": server_status},
            "default_tenant": workdir.config.default_tenant,
            "tenants": tenants_json,
            "endpoints": endpoints.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        }),
    );
    Ok(())
}

/// The pageserver's own status as indented lines.
fn status_text(server: &api_types::StatusResponse) -> String {
    let native = if server.native_redo_rmgrs.is_empty() {
        "none".to_owned()
    } else {
        server.native_redo_rmgrs.join(", ")
    };
    let checking = if server.wal_consistency_checking.is_empty() {
        "off"
    } else {
        server.wal_consistency_checking.as_str()
    };
    format!(
        "\n  node id {}\n  native redo: {native}\n  endpoints run with wal_consistency_checking = {checking}",
        server.id
    )
}

/// `sediment tenant ...`.
pub fn tenant(mut workdir: Workdir, command: TenantCommand, out: &Output) -> anyhow::Result<()> {
    let client = ApiClient::for_workdir(&workdir)?;
    match command {
        TenantCommand::Create {
            tenant_id,
            set_default,
            config,
        } => {
            if let Some(id) = &tenant_id {
                check_id("tenant", id)?;
            }
            let request = api_types::TenantCreateRequest {
                new_tenant_id: tenant_id,
                generation: None,
                config: parse_settings(&config)?,
            };
            let created = client.post("/v1/tenant", &request)?;
            let tenant = created
                .as_str()
                .context("the pageserver returned no tenant id")?
                .to_owned();
            let timeline = random_id();
            let info: TimelineInfo = {
                let _progress = Progress::spinner("bootstrapping branch main (initdb)");
                client
                    .post_as(
                        &format!("/v1/tenant/{tenant}/timeline"),
                        &TimelineCreateRequest {
                            new_timeline_id: timeline.clone(),
                            branch_name: Some("main".to_owned()),
                            ..Default::default()
                        },
                    )
                    .with_context(|| {
                        format!(
                            "tenant {tenant} was created, but bootstrapping its main branch failed"
                        )
                    })?
            };
            workdir
                .config
                .branches
                .entry(tenant.clone())
                .or_default()
                .insert("main".into(), timeline.clone());
            if set_default || workdir.config.default_tenant.is_none() {
                workdir.config.default_tenant = Some(tenant.clone());
            }
            workdir.save()?;
            out.print(
                &format!(
                    "tenant {tenant} created; branch main is timeline {timeline} at {}",
                    info.last_record_lsn
                ),
                &json!({"tenant_id": tenant, "timeline_id": timeline, "branch": "main", "timeline": info}),
            );
        }
        TenantCommand::List => {
            let tenants: Vec<TenantInfo> = client.get_as("/v1/tenant")?;
            let rows: Vec<String> = tenants
                .iter()
                .map(|t| {
                    let marker = if workdir.config.default_tenant.as_deref() == Some(&t.id) {
                        " (default)"
                    } else {
                        ""
                    };
                    let generation = t
                        .generation
                        .map_or_else(|| "-".to_owned(), |g| g.to_string());
                    format!(
                        "{}  {}  generation {generation}  physical {}{marker}",
                        t.id,
                        t.attachment_status.slug,
                        human_size(Some(t.current_physical_size))
                    )
                })
                .collect();
            out.print_as(&rows.join("\n"), &tenants);
        }
        TenantCommand::Attach {
            tenant_id,
            generation,
            set_default,
        } => {
            check_id("tenant", &tenant_id)?;
            attach_tenant(&client, &tenant_id, generation)?;
            let info: TenantInfo = client.get_as(&format!("/v1/tenant/{tenant_id}"))?;
            // Branch names come with the tenant (its remote indexes carry
            // them); timelines without one are named by id, except that an
            // unnamed root becomes `main` when that name is free.
            let timelines: Vec<TimelineInfo> =
                client.get_as(&format!("/v1/tenant/{tenant_id}/timeline"))?;
            let branches = workdir
                .config
                .branches
                .entry(tenant_id.clone())
                .or_default();
            for timeline in &timelines {
                let id = &timeline.timeline_id;
                if branches.values().any(|known| known == id) {
                    continue;
                }
                let name = match &timeline.branch_name {
                    Some(name) if !branches.contains_key(name) => name.clone(),
                    _ if timeline.ancestor_timeline_id.is_none()
                        && !branches.contains_key("main")
                        && !timelines
                            .iter()
                            .any(|t| t.branch_name.as_deref() == Some("main")) =>
                    {
                        "main".to_owned()
                    }
                    _ => id.clone(),
                };
                branches.insert(name, id.clone());
            }
            if set_default || workdir.config.default_tenant.is_none() {
                workdir.config.default_tenant = Some(tenant_id.clone());
            }
            workdir.save()?;
            // Endpoints that kept running while the pageserver lost the
            // tenant (a lost disk) stream into it again.
            let (resumed, failed) =
                crate::endpoint::resume_streaming(&workdir, &client, &tenant_id);
            for (name, error) in &failed {
                eprintln!(
                    "warning: endpoint {name} does not stream into the attached tenant \
                     (its commits wait until it does; restart it): {error:#}"
                );
            }
            let mut text = format!("tenant {tenant_id} attached (generation {generation})");
            if !resumed.is_empty() {
                text.push_str(&format!(
                    "; endpoint(s) {} stream from the recovered head",
                    resumed.join(", ")
                ));
            }
            out.print_as(&text, &info);
        }
        TenantCommand::Detach { tenant_id } => {
            check_id("tenant", &tenant_id)?;
            client.post(&format!("/v1/tenant/{tenant_id}/detach"), &json!({}))?;
            out.print(
                &format!("tenant {tenant_id} detached"),
                &json!({"tenant_id": tenant_id}),
            );
        }
        TenantCommand::Delete { tenant_id } => {
            check_id("tenant", &tenant_id)?;
            delete_tenant(&client, &workdir, &tenant_id)?;
            workdir.config.branches.remove(&tenant_id);
            if workdir.config.default_tenant.as_deref() == Some(tenant_id.as_str()) {
                workdir.config.default_tenant = None;
            }
            workdir.save()?;
            out.print(
                &format!("tenant {tenant_id} deleted"),
                &json!({"tenant_id": tenant_id, "deleted": true}),
            );
        }
        TenantCommand::Config(TenantConfigCommand::Get { tenant_id }) => {
            let tenant = workdir.tenant(tenant_id.as_deref())?;
            let config: api_types::TenantConfigResponse =
                client.get_as(&format!("/v1/tenant/{tenant}/config"))?;
            out.print_as(&config_text(&tenant, &config), &config);
        }
        TenantCommand::Config(TenantConfigCommand::Set { tenant_id, config }) => {
            let tenant = workdir.tenant(tenant_id.as_deref())?;
            let changes = parse_config_changes(&config)?;
            let current: api_types::TenantConfigResponse =
                client.get_as(&format!("/v1/tenant/{tenant}/config"))?;
            // The API replaces the overrides; merge so that setting one key
            // keeps the others.
            let mut overrides = current.tenant_specific_overrides;
            for (key, value) in changes {
                match value {
                    Some(value) => overrides.insert(key, value),
                    None => overrides.remove(&key),
                };
            }
            client
                .put(
                    "/v1/tenant/config",
                    &api_types::TenantConfigRequest {
                        tenant_id: tenant.clone(),
                        config: overrides,
                    },
                )
                .with_context(|| format!("cannot change the settings of tenant {tenant}"))?;
            let config: api_types::TenantConfigResponse =
                client.get_as(&format!("/v1/tenant/{tenant}/config"))?;
            out.print_as(&config_text(&tenant, &config), &config);
        }
    }
    Ok(())
}

/// Rejects a malformed id before asking the pageserver, with a sentence
/// that names the argument.
fn check_id(kind: &str, id: &str) -> anyhow::Result<()> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{id:?} is not a {kind} id: expected 32 hexadecimal digits");
    }
    Ok(())
}

/// Starts the deletion (refused while a writable endpoint of the tenant
/// runs) and waits until the tenant is gone.
fn delete_tenant(client: &ApiClient, workdir: &Workdir, tenant_id: &str) -> anyhow::Result<()> {
    let running: Vec<String> = crate::endpoint::list_states(workdir)
        .into_iter()
        .filter(|e| e.tenant_id == tenant_id && e.writable && e.running)
        .map(|e| e.name)
        .collect();
    if !running.is_empty() {
        bail!(
            "tenant {tenant_id} has running writable endpoints ({}); stop them first with `sediment endpoint stop NAME`",
            running.join(", ")
        );
    }
    if let Err(error) = client.delete(&format!("/v1/tenant/{tenant_id}")) {
        match refused_status(&error) {
            Some(reqwest::StatusCode::NOT_FOUND) => bail!("tenant {tenant_id} does not exist"),
            Some(reqwest::StatusCode::CONFLICT) => bail!(
                "tenant {tenant_id} cannot be deleted now: {}",
                refused_msg(&error)
            ),
            _ => return Err(error),
        }
    }
    let _progress = Progress::spinner(format!("deleting tenant {tenant_id}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        match client.get_as::<TenantInfo>(&format!("/v1/tenant/{tenant_id}")) {
            Err(error) if refused_status(&error) == Some(reqwest::StatusCode::NOT_FOUND) => {
                return Ok(())
            }
            Err(error) => return Err(error),
            Ok(info) => {
                if info.state == "Broken" {
                    bail!(
                        "deleting tenant {tenant_id} failed: {}",
                        info.attachment_status
                            .data
                            .reason
                            .as_deref()
                            .unwrap_or("no reason given")
                    );
                }
                if std::time::Instant::now() > deadline {
                    bail!("tenant {tenant_id} is still being deleted after 10 minutes");
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// The server's message of a refusal in `error`'s chain.
fn refused_msg(error: &anyhow::Error) -> String {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<crate::client::Refused>())
        .map_or_else(|| error.to_string(), |refused| refused.msg.clone())
}

/// `tenant config get|set` as text: overrides, then the effective values.
fn config_text(tenant: &str, config: &api_types::TenantConfigResponse) -> String {
    let mut text = format!("tenant {tenant}\noverrides:");
    if config.tenant_specific_overrides.is_empty() {
        text.push_str(" none");
    }
    for (key, value) in &config.tenant_specific_overrides {
        text.push_str(&format!("\n  {key} = {value}"));
    }
    text.push_str("\neffective:");
    for (key, value) in &config.effective_config {
        text.push_str(&format!("\n  {key} = {value}"));
    }
    text
}

/// `key=value` changes; `key=` (nothing after `=`) removes the override.
fn parse_config_changes(items: &[String]) -> anyhow::Result<Vec<(String, Option<Value>)>> {
    let mut changes = Vec::new();
    for item in items {
        let (key, value) = item
            .split_once('=')
            .with_context(|| format!("setting {item:?} is not of the form key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            bail!("setting {item:?} has no key");
        }
        let value = if value.trim().is_empty() {
            None
        } else {
            parse_settings(std::slice::from_ref(item))?.remove(key)
        };
        changes.push((key.to_owned(), value));
    }
    Ok(changes)
}

/// Turns `key=value` settings into JSON: integers and booleans as such,
/// anything else as a string (the pageserver validates the values).
fn parse_settings(items: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for item in items {
        let (key, value) = item
            .split_once('=')
            .with_context(|| format!("setting {item:?} is not of the form key=value"))?;
        if key.trim().is_empty() {
            bail!("setting {item:?} has no key");
        }
        // The spec types compaction_threshold as a (numeric) string.
        let value = if key.trim() == "compaction_threshold" {
            json!(value)
        } else if let Ok(n) = value.parse::<u64>() {
            json!(n)
        } else if let Ok(b) = value.parse::<bool>() {
            json!(b)
        } else {
            json!(value)
        };
        map.insert(key.trim().to_owned(), value);
    }
    Ok(map)
}

/// A fresh 32-hex-digit id.
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// `sediment timeline ...`.
pub fn timeline(
    mut workdir: Workdir,
    command: TimelineCommand,
    out: &Output,
) -> anyhow::Result<()> {
    let client = ApiClient::for_workdir(&workdir)?;
    match command {
        TimelineCommand::Diff(args) => {
            return crate::history::diff::run(&workdir, &client, args, out)
        }
        TimelineCommand::List { tenant_id } => {
            let tenant = workdir.tenant(tenant_id.as_deref())?;
            let timelines: Vec<TimelineInfo> =
                client.get_as(&format!("/v1/tenant/{tenant}/timeline"))?;
            let names = workdir
                .config
                .branches
                .get(&tenant)
                .cloned()
                .unwrap_or_default();
            let rows = branch_rows(&timelines, &names);
            let text = rows
                .iter()
                .map(|r| r.text.clone())
                .collect::<Vec<_>>()
                .join("\n");
            out.print(
                &text,
                &Value::Array(rows.into_iter().map(|r| r.json).collect()),
            );
        }
        TimelineCommand::Branch {
            branch_name,
            ancestor_branch_name,
            ancestor_start_lsn,
            at,
            tenant_id,
        } => {
            let tenant = workdir.tenant(tenant_id.as_deref())?;
            if workdir.branch_timeline(&tenant, &branch_name).is_ok() {
                bail!("branch {branch_name:?} already exists");
            }
            let ancestor = workdir.branch_timeline(&tenant, &ancestor_branch_name)?;
            let timeline = random_id();
            let ancestor_start_lsn = match at {
                Some(at) => Some(lsn_at_time(
                    &client,
                    &tenant,
                    &ancestor,
                    &ancestor_branch_name,
                    &at,
                )?),
                None => ancestor_start_lsn,
            };
            let mut request = TimelineCreateRequest {
                new_timeline_id: timeline.clone(),
                ancestor_timeline_id: Some(ancestor.clone()),
                branch_name: Some(branch_name.clone()),
                ..Default::default()
            };
            if let Some(lsn) = &ancestor_start_lsn {
                let lsn: Lsn = lsn.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "--ancestor-start-lsn {lsn:?} is not an LSN (two hex numbers like 0/16B9188)"
                    )
                })?;
                request.ancestor_start_lsn = Some(lsn.to_string());
                wait_for_streamed_lsn(&client, &tenant, &ancestor, lsn)?;
            }
            let info: TimelineInfo = client
                .post_as(&format!("/v1/tenant/{tenant}/timeline"), &request)
                .with_context(|| format!("cannot create branch {branch_name:?}"))?;
            workdir
                .config
                .branches
                .entry(tenant.clone())
                .or_default()
                .insert(branch_name.clone(), timeline.clone());
            workdir.save()?;
            out.print(
                &format!(
                    "branch {branch_name} created: timeline {timeline}, from {ancestor_branch_name} at {}",
                    info.ancestor_lsn.map_or_else(|| "?".to_owned(), |lsn| lsn.to_string())
                ),
                &json!({"branch": branch_name, "timeline_id": timeline, "timeline": info}),
            );
        }
        TimelineCommand::Delete { name, tenant_id } => {
            let tenant = workdir.tenant(tenant_id.as_deref())?;
            let timeline = workdir.branch_timeline(&tenant, &name)?;
            delete_timeline(&client, &workdir, &tenant, &name, &timeline)?;
            if let Some(branches) = workdir.config.branches.get_mut(&tenant) {
                branches.remove(&name);
            }
            workdir.save()?;
            out.print(
                &format!("branch {name} (timeline {timeline}) deleted"),
                &json!({"branch": name, "timeline_id": timeline, "tenant_id": tenant, "deleted": true}),
            );
        }
        TimelineCommand::Gc { name, tenant_id } => {
            let tenant = workdir.tenant(tenant_id.as_deref())?;
            let timeline = workdir.branch_timeline(&tenant, &name)?;
            let answer = {
                let _progress = Progress::spinner(format!("garbage-collecting branch {name}"));
                client
                    .put(
                        &format!("/v1/tenant/{tenant}/timeline/{timeline}/do_gc"),
                        &json!({}),
                    )
                    .with_context(|| format!("cannot garbage-collect branch {name:?}"))?
            };
            let text = answer
                .as_str()
                .context("the pageserver's GC answer is not a string")?;
            let summary: GcSummary = text.parse()?;
            out.print(
                &format!(
                    "branch {name}: gc cutoff {}, removed {} layer files ({}), kept {}",
                    summary.cutoff,
                    summary.layers_removed,
                    human_size(Some(summary.bytes_removed)),
                    summary.layers_kept
                ),
                &json!({"branch": name, "timeline_id": timeline, "cutoff": summary.cutoff,
                        "layers_removed": summary.layers_removed, "bytes_removed": summary.bytes_removed,
                        "layers_kept": summary.layers_kept}),
            );
        }
    }
    Ok(())
}

/// Deletes one branch: refused, with what to do instead, while a writable
/// endpoint streams into it or while child branches depend on it.
fn delete_timeline(
    client: &ApiClient,
    workdir: &Workdir,
    tenant: &str,
    name: &str,
    timeline: &str,
) -> anyhow::Result<()> {
    let endpoints = crate::endpoint::list_states(workdir);
    if let Some(endpoint) = endpoints
        .iter()
        .find(|e| e.timeline_id == timeline && e.writable && e.running)
    {
        bail!(
            "branch {name:?} has a running writable endpoint; stop endpoint {} first (`sediment endpoint stop {}`)",
            endpoint.name,
            endpoint.name
        );
    }
    let timelines: Vec<TimelineInfo> = client.get_as(&format!("/v1/tenant/{tenant}/timeline"))?;
    let names = workdir
        .config
        .branches
        .get(tenant)
        .cloned()
        .unwrap_or_default();
    let children: Vec<String> = timelines
        .iter()
        .filter(|t| t.ancestor_timeline_id.as_deref() == Some(timeline))
        .map(|t| name_of(&names, &t.timeline_id))
        .collect();
    if !children.is_empty() {
        bail!(
            "branch {name:?} has child branches ({}); delete them first",
            children.join(", ")
        );
    }
    match client.delete(&format!("/v1/tenant/{tenant}/timeline/{timeline}")) {
        Ok(_) => Ok(()),
        Err(error) => match refused_status(&error) {
            Some(reqwest::StatusCode::CONFLICT) => {
                // Streaming from an endpoint this work directory does not
                // know as running (a stale state file, another CLI).
                let named = endpoints
                    .iter()
                    .find(|e| e.timeline_id == timeline && e.writable)
                    .map_or_else(
                        || "its writable endpoint".to_owned(),
                        |e| format!("endpoint {}", e.name),
                    );
                bail!("branch {name:?} cannot be deleted while a writable endpoint streams into it; stop {named} first")
            }
            Some(reqwest::StatusCode::PRECONDITION_FAILED) => {
                bail!("branch {name:?} cannot be deleted: {}", refused_msg(&error))
            }
            Some(reqwest::StatusCode::NOT_FOUND) => {
                bail!("branch {name:?} (timeline {timeline}) does not exist on the pageserver")
            }
            _ => Err(error),
        },
    }
}

/// How long a branch at an LSN the ancestor has not ingested yet waits for
/// it, when a writable endpoint is streaming into the ancestor.
const BRANCH_LSN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A user who just read `pg_current_wal_insert_lsn()` on a writable endpoint
/// and branches there may be a moment ahead of ingest: wait for it (bounded)
/// instead of failing. Without a live WAL source nothing would arrive, so the
/// pageserver's "beyond the last record" answer comes at once.
fn wait_for_streamed_lsn(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    lsn: Lsn,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut progress = None;
    loop {
        let info = client.timeline_info(tenant, timeline)?;
        let head = info.last_record_lsn;
        let streaming = info.wal_source_connstr.is_some();
        if !streaming || head >= lsn || started.elapsed() >= BRANCH_LSN_WAIT {
            return Ok(());
        }
        progress
            .get_or_insert_with(|| Progress::spinner(format!("waiting for WAL up to {lsn}")))
            .set_message(format!("waiting for WAL up to {lsn} (ingested {head})"));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

struct Row {
    text: String,
    json: Value,
}

/// Orders timelines as a tree (parents before children, depth-indented).
fn branch_rows(timelines: &[TimelineInfo], names: &BTreeMap<String, String>) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut visited = std::collections::HashSet::new();
    add_children(timelines, names, None, 0, &mut visited, &mut rows);
    rows
}

fn name_of(names: &BTreeMap<String, String>, id: &str) -> String {
    names
        .iter()
        .find(|(_, timeline)| timeline.as_str() == id)
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| "-".into())
}

fn add_children(
    timelines: &[TimelineInfo],
    names: &BTreeMap<String, String>,
    parent: Option<&str>,
    depth: usize,
    visited: &mut std::collections::HashSet<String>,
    rows: &mut Vec<Row>,
) {
    let mut children: Vec<&TimelineInfo> = timelines
        .iter()
        .filter(|t| t.ancestor_timeline_id.as_deref() == parent)
        .collect();
    children.sort_by_key(|t| name_of(names, &t.timeline_id));
    for t in children {
        let id = t.timeline_id.clone();
        // Guards against a malformed answer with a cycle.
        if !visited.insert(id.clone()) {
            continue;
        }
        let name = name_of(names, &id);
        let ancestor = match &t.ancestor_timeline_id {
            Some(a) => format!(
                "{}@{}",
                name_of(names, a),
                t.ancestor_lsn
                    .map_or_else(|| "?".to_owned(), |lsn| lsn.to_string())
            ),
            None => "-".into(),
        };
        let mut text = format!(
            "{}{name}  {id}  ancestor {ancestor}  last record {}  logical {}  physical {}",
            "  ".repeat(depth),
            t.last_record_lsn,
            human_size(t.current_logical_size),
            human_size(t.current_physical_size),
        );
        // An operator must see a broken timeline or a corrupt read here,
        // not only in the pageserver's log.
        if let Some(reason) = &t.broken_reason {
            text.push_str(&format!("  BROKEN: {reason}"));
        }
        if let Some(corruption) = &t.corruption_error {
            text.push_str(&format!("  CORRUPT READ: {corruption}"));
        }
        rows.push(Row {
            text,
            json: json!({"branch": name, "timeline_id": id, "ancestor_timeline_id": t.ancestor_timeline_id,
                         "ancestor_lsn": t.ancestor_lsn, "last_record_lsn": t.last_record_lsn,
                         "current_logical_size": t.current_logical_size,
                         "current_physical_size": t.current_physical_size,
                         "state": t.state, "broken_reason": t.broken_reason,
                         "corruption_error": t.corruption_error,
                         "depth": depth}),
        });
        add_children(timelines, names, Some(&id), depth + 1, visited, rows);
    }
}

/// The LSN of `branch` (timeline `timeline`) as of `at`, from the
/// pageserver's commit-time map: the end of the last commit at or before it.
fn lsn_at_time(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    branch: &str,
    at: &str,
) -> anyhow::Result<String> {
    let query: String = form_urlencoded::byte_serialize(at.as_bytes()).collect();
    let found: api_types::LsnByTimestampResponse = client
        .get_as(&format!(
            "/v1/tenant/{tenant}/timeline/{timeline}/get_lsn_by_timestamp?timestamp={query}"
        ))
        .with_context(|| format!("cannot find the LSN of branch {branch:?} at {at:?}"))?;
    let lsn = found.lsn;
    match found.kind.as_str() {
        "present" | "future" => Ok(lsn.to_string()),
        "past" => bail!(
            "{at:?} is before the oldest commit the pageserver knows on branch {branch:?}; pass --ancestor-start-lsn {lsn} to branch where its history starts"
        ),
        _ => bail!("the pageserver knows no commit times on branch {branch:?} yet, so --at cannot be resolved; pass --ancestor-start-lsn LSN"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_numbers_and_booleans_typed() {
        let parsed = parse_settings(&[
            "gc_horizon=1024".into(),
            "trace_read_requests=true".into(),
            "pitr_interval=1h".into(),
            "compaction_threshold=5".into(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(parsed),
            json!({"gc_horizon": 1024, "trace_read_requests": true, "pitr_interval": "1h",
                   "compaction_threshold": "5"})
        );
        assert!(parse_settings(&["novalue".into()]).is_err());
    }

    #[test]
    fn branch_tree_lists_parents_before_children() {
        let info = |id: &str, ancestor: Option<(&str, u64)>, head: u64| TimelineInfo {
            tenant_id: "t".into(),
            timeline_id: id.into(),
            ancestor_timeline_id: ancestor.map(|(a, _)| a.into()),
            ancestor_lsn: ancestor.map(|(_, lsn)| Lsn(lsn)),
            last_record_lsn: Lsn(head),
            prev_record_lsn: None,
            disk_consistent_lsn: Lsn(head),
            remote_consistent_lsn: None,
            remote_consistent_lsn_visible: None,
            latest_gc_cutoff_lsn: Lsn(0),
            initdb_lsn: Lsn(1),
            current_logical_size: Some(8192),
            current_physical_size: None,
            wal_source_connstr: None,
            last_received_msg_lsn: None,
            last_received_msg_ts: None,
            wal_receiver_error: None,
            state: "Active".into(),
            broken_reason: None,
            corruption_error: None,
            pg_version: 15,
            branch_name: None,
        };
        let timelines = vec![
            info("c", Some(("b", 3)), 3),
            info("a", None, 9),
            info("b", Some(("a", 2)), 5),
            info("d", Some(("a", 4)), 4),
        ];
        let names: BTreeMap<String, String> =
            [("main", "a"), ("dev", "b"), ("feature", "c"), ("zzz", "d")]
                .into_iter()
                .map(|(n, id)| (n.to_owned(), id.to_owned()))
                .collect();
        let rows = branch_rows(&timelines, &names);
        let order: Vec<(&str, u64)> = rows
            .iter()
            .map(|row| {
                (
                    row.json["branch"].as_str().unwrap(),
                    row.json["depth"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(order, [("main", 0), ("dev", 1), ("feature", 2), ("zzz", 1)]);
        assert!(
            rows[1].text.contains("ancestor main@0/2"),
            "{}",
            rows[1].text
        );
        assert!(
            rows[0].text.contains("logical 8.0 KiB  physical -"),
            "{}",
            rows[0].text
        );
    }
}
