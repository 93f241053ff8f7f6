//! `qluster --config FILE`: the daemon. A thin shell over `qluster_core`: it opens the
//! Raft core, runs the driver task, serves the REST API (and peer Raft messages) on the
//! api port, and supervises the local PostgreSQL.

mod api;
mod driver;
mod postgres;
mod settings;
mod supervisor;
mod token;
mod transport;
mod watchdog;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use qluster_core::node::bootstrap_snapshot_of;
use qluster_core::{ClusterState, Core};

use crate::settings::Settings;

#[derive(Parser)]
#[command(about = "Raft-based high availability manager for PostgreSQL")]
struct Args {
    /// YAML configuration file.
    #[arg(long, required_unless_present = "watchdog")]
    config: Option<PathBuf>,
    /// Internal: run as the fencing watchdog of the Postgres data directory given (the
    /// daemon starts it; see `watchdog.rs`).
    #[arg(long, hide = true)]
    watchdog: Option<PathBuf>,
}

fn open_core(settings: &Settings) -> anyhow::Result<Core> {
    let bootstrap = if settings.peers.is_empty() {
        None
    } else {
        let mut state = ClusterState::bootstrap(
            settings.founding_nodes(),
            settings.cluster.clone().unwrap_or_default(),
        );
        state.db_config.synchronous_standbys = settings.synchronous_standbys;
        Some(bootstrap_snapshot_of(state)?)
    };
    let core = Core::open(
        settings.node_id,
        &settings.raft_dir(),
        bootstrap,
        qluster_core::discard_logger(),
    )
    .context("opening raft storage")?;
    Ok(core)
}

fn local_db(settings: &Settings) -> anyhow::Result<supervisor::LocalDb> {
    if !settings.manage_postgres {
        return Ok(supervisor::LocalDb {
            pg: None,
            can_lead: AtomicBool::new(true),
            lease: Arc::default(),
        });
    }
    let os_user = match &settings.pg_os_user {
        Some(u) => Some(u.clone()),
        // The workspace's one setting (SEDIMENT_PG_OS_USER, else postgres).
        None if pgproc::running_as_root() => Some(pgproc::configured_user_name()),
        None => None,
    };
    let auth = postgres::PgAuth {
        superuser_password: settings
            .superuser_password
            .clone()
            .context("superuser-password is required")?,
        replication_password: settings
            .replication_password
            .clone()
            .context("replication-password is required")?,
        secrets_dir: settings.secrets_dir(),
    };
    Ok(supervisor::LocalDb {
        pg: Some(postgres::Postgres {
            bin_dir: settings.pg_bin_dir.clone(),
            data_dir: settings.pg_data_dir(),
            port: settings.db_port,
            os_user,
            application_name: format!("node{}", settings.node_id),
            log_file: settings.data_dir.join("postgres.log"),
            auth,
        }),
        can_lead: AtomicBool::new(true),
        lease: Arc::default(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    if let Some(dir) = &args.watchdog {
        return watchdog::run_watchdog(dir).context("watchdog");
    }
    let config = args.config.context("--config is required")?;
    let settings = Arc::new(Settings::load(&config)?);
    let core = open_core(&settings)?;
    let token = token::ApiToken::new(settings.api_token.expose());
    // Peers require the token on `/raft` and forwarded switchovers: every request of
    // ours carries it.
    let mut http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .default_headers(token.client_headers().context("api-token")?);
    if settings.bind_source_address {
        let ip: std::net::IpAddr = settings
            .ip
            .parse()
            .context("bind-source-address needs `ip` to be an IP address")?;
        http = http.local_address(ip);
    }
    let http = http.build().context("http client")?;
    let addr = qluster_core::state::join_host_port(&settings.ip, settings.api_port);
    let transport = transport::Transport::new(settings.node_id, addr.clone(), http.clone());
    let peer_addrs = transport.addrs();
    let db = Arc::new(local_db(&settings)?);
    if let Some(pg) = &db.pg {
        pg.install_passfile()
            .context("writing the Postgres password file")?;
        // Before anything can start Postgres: from here on it never outlives us.
        watchdog::spawn_link(pg.data_dir.clone(), db.lease.clone()).context("watchdog")?;
    }
    let (driver, handle) = driver::Driver::new(core, transport, db.clone(), db.lease.clone());
    watchdog::spawn_stall_detector(db.lease.clone()).context("stall detector")?;
    let app = api::router(api::AppState {
        driver: handle.clone(),
        db: db.clone(),
        http: http.clone(),
        peer_addrs,
        token,
    });
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!("node {} serving on {addr}", settings.node_id);
    let sup = supervisor::Supervisor::new(
        db.clone(),
        handle.clone(),
        http,
        settings.readonly_scan_interval,
    );
    tokio::spawn(sup.run());
    tokio::spawn(supervisor::fence(db.clone(), db.lease.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::select! {
        r = driver.run() => {
            // A storage failure: stop, never continue on a failed fsync (restart recovers).
            r.context("raft driver stopped")?;
        }
        r = server => {
            r.context("server task")?.context("http server")?;
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
