//! `pageserver --workdir DIR [-c key=value]...`: the daemon. Everything it
//! does lives in the library; this file parses arguments, sets up logging,
//! and turns SIGTERM/SIGINT into the shutdown signal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pageserver::config::{LogFormat, PageServerConf};
use tokio_util::sync::CancellationToken;

/// The Sediment pageserver.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Work directory: holds pageserver.toml and the tenants.
    #[arg(long, short = 'D')]
    workdir: PathBuf,
    /// Setting override, `key=value` (value in TOML syntax or a bare string);
    /// repeatable. Unknown keys are an error.
    #[arg(short = 'c', long = "config-override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.workdir)
        .with_context(|| format!("cannot create work directory {}", args.workdir.display()))?;
    let conf = PageServerConf::load(&args.workdir, &args.overrides)?;
    init_logging(conf.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pageserver")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args.workdir, conf))
}

async fn run(workdir: PathBuf, conf: PageServerConf) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let server = pageserver::server::start(workdir, conf, shutdown.clone()).await?;
    tracing::info!(http_addr = %server.http_addr, "pageserver started");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    server.wait().await;
    tracing::info!("pageserver stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: `sediment start` sends the log to
    // a file, where they would be noise for every reader and grep.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
