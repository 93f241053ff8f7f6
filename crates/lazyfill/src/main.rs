//! `lazyfill run <config.json>`: the fill process of a lazy endpoint
//! (starts the guard, which starts Postgres). `lazyfill guard ...` is the
//! guard itself, started only by `run`. See the library docs.

use std::path::PathBuf;

use anyhow::{bail, Context};
use lazyfill::supervise::{run_filler, run_guard, FillConfig, GuardArgs};

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("lazyfill: {error:#}");
            std::process::exit(2);
        }
    }
}

fn real_main() -> anyhow::Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") if args.len() == 2 => {
            let text = std::fs::read(&args[1]).with_context(|| args[1].clone())?;
            let config: FillConfig = serde_json::from_slice(&text).context("config")?;
            run_filler(&config)
        }
        Some("guard") if args.len() > 7 && args[6] == "--" => run_guard(GuardArgs {
            group_fd: args[1].parse().context("group fd")?,
            pipe_fd: args[2].parse().context("pipe fd")?,
            uid: args[3].parse().context("uid")?,
            gid: args[4].parse().context("gid")?,
            log: PathBuf::from(&args[5]),
            postgres: args[7..].to_vec(),
        }),
        _ => bail!("usage: lazyfill run <config.json>"),
    }
}
