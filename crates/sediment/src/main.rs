//! `sediment`: the local control plane. It writes a work directory, starts
//! and stops the pageserver, creates tenants and branches through the
//! management API, and runs stock Postgres endpoints from base backups:
//! read-only at an LSN, or writable at a branch head with their WAL streaming
//! back into the branch.
//!
//! Modules: [`workdir`] (config and layout), [`client`] (management API),
//! [`daemon`] (the pageserver process), [`commands`] (tenant and timeline
//! commands), [`endpoint`] (Postgres endpoints), [`output`] (text or JSON),
//! [`security`] (auth key, TLS CA, `sediment token`), [`console`] (the web
//! console's URL), [`history`] (`timeline
//! diff`, `table restore`).

mod basebackup;
mod client;
mod commands;
mod console;
mod daemon;
mod endpoint;
mod history;
mod output;
mod security;
mod workdir;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Local control plane for Sediment: pageserver, tenants, branches, endpoints.
#[derive(Debug, Parser)]
#[command(name = "sediment", version, about)]
pub struct Cli {
    /// Work directory (default: $SEDIMENT_WORKDIR, else ./.sediment).
    #[arg(long, global = true, env = "SEDIMENT_WORKDIR")]
    workdir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the configuration into the work directory.
    Init(commands::InitArgs),
    /// Start the pageserver in the background.
    Start,
    /// Stop the pageserver gracefully.
    Stop,
    /// Show what runs and where.
    Status,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(commands::TenantCommand),
    /// Manage timelines (branches).
    #[command(subcommand)]
    Timeline(commands::TimelineCommand),
    /// Tables as of a past point.
    #[command(subcommand)]
    Table(TableCommand),
    /// Manage Postgres endpoints.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Print a JWT signed with the work directory's key (last line).
    Token(security::TokenArgs),
    /// Print the URL of the pageserver's web console (with a token when
    /// auth is on).
    Console,
}

/// `sediment table ...`
#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Bring a table (with its indexes) back as of a past point into the
    /// branch's running writable endpoint, replacing it or under --as.
    Restore(history::restore::RestoreArgs),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lazyfill") {
        // The fill process of a lazy endpoint (internal; see endpoint::lazy).
        return endpoint::lazy::fill_process_main(&args[2..]);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let out = output::Output { json: cli.json };
    let workdir = workdir::resolve(cli.workdir);
    match run(cli.command, &workdir, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` print as clap renders them (exit 0); a usage
/// mistake prints clap's first line, which names the problem, plus a
/// pointer to `--help`, as one line (exit 2, clap's convention).
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Help for a bare `sediment` or `sediment tenant` is still a
            // mistake (nothing ran), but the help is what the user needs.
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // The first paragraph names the problem (and, for missing
            // arguments, lists them); tips and usage follow.
            let rendered = error.render().to_string();
            let first = one_line(rendered.trim().split("\n\n").next().unwrap_or_default());
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!("error: {}; see --help", first.trim_end_matches('.'));
            ExitCode::from(2)
        }
    }
}

/// Errors are one line: messages that carry a newline (a child process's
/// output, a server message) are joined with spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(command: Command, workdir: &std::path::Path, out: &output::Output) -> anyhow::Result<()> {
    match command {
        Command::Init(args) => commands::init(workdir, args, out),
        Command::Start => commands::start(&workdir::Workdir::open(workdir)?, out),
        Command::Stop => commands::stop(&workdir::Workdir::open(workdir)?, out),
        Command::Status => commands::status(&workdir::Workdir::open(workdir)?, out),
        Command::Tenant(command) => {
            commands::tenant(workdir::Workdir::open(workdir)?, command, out)
        }
        Command::Timeline(command) => {
            commands::timeline(workdir::Workdir::open(workdir)?, command, out)
        }
        Command::Endpoint(command) => {
            endpoint::run(&workdir::Workdir::open(workdir)?, command, out)
        }
        Command::Table(TableCommand::Restore(args)) => {
            history::restore::run(&workdir::Workdir::open(workdir)?, args, out)
        }
        Command::Token(args) => security::token(&workdir::Workdir::open(workdir)?, args, out),
        Command::Console => console::run(&workdir::Workdir::open(workdir)?, out),
    }
}
