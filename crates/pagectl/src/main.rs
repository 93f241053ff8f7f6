//! `pagectl`: offline tools over PostgreSQL and Sediment files.
//!
//! Each subcommand lives in its own module with its own clap `Args`; adding
//! one means adding a module and one variant here.

use clap::{Parser, Subcommand};

mod layer;
mod redo_check;
mod waldump;

/// Offline tools: WAL dump and statistics, layer inspection, redo checks.
#[derive(Parser, Debug)]
#[command(name = "pagectl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode WAL segment files (or directories of them), like pg_waldump.
    Waldump(waldump::Args),
    /// Check native redo against wal_consistency_checking after-images.
    RedoCheck(redo_check::Args),
    /// Inspect storage layer files: `layer ls DIR`, `layer dump FILE`.
    Layer(layer::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Waldump(args) => waldump::run(&args),
        Command::RedoCheck(args) => redo_check::run(&args),
        Command::Layer(args) => layer::run(&args),
    }
}
