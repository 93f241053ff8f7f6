//! `pagectl redo-check`: prove native redo against WAL written with
//! `wal_consistency_checking`. Reads segment files (as `waldump` does),
//! feeds every record to [`redo::check::Checker`] — which keeps the latest
//! version of every block and, for each consistency-check image, redoes the
//! record natively on the previous version and compares the masked pages —
//! then prints per resource manager checked / matched / mismatched /
//! unsupported / no-base counts and the first mismatches.
//!
//! Exits non-zero when any block mismatched.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use postgres_wal::record::ForkNumber;
use postgres_wal::rmgr::identify::identify;
use postgres_wal::Lsn;
use redo::check::{rmgr_name, Checker, Mismatch};

use crate::waldump::{collect_segment_files, decode_files, detect_segment_size};

/// Arguments of `pagectl redo-check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many mismatches to print in detail.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
    /// Segment files, or directories holding them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let files = collect_segment_files(&args.paths)?;
    let segment_size = detect_segment_size(&files[0])?;
    let mut checker = Checker::new();
    checker.keep_mismatches = args.show;
    let mut records = 0u64;
    let stop = decode_files(&files, segment_size, |raw, _layout| {
        let record = raw
            .decode()
            .with_context(|| format!("decoding record at {}", raw.start_lsn))?;
        checker.feed(&record);
        records += 1;
        Ok(())
    })?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(out, "{records} records")?;
    writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>9} {:>10} {:>11} {:>8} {:>9}",
        "rmgr", "records", "checked", "matched", "mismatched", "unsupported", "no_base", "restored"
    )?;
    for (rmid, s) in checker.stats() {
        writeln!(
            out,
            "{:<12} {:>9} {:>9} {:>9} {:>10} {:>11} {:>8} {:>9}",
            rmgr_name(*rmid),
            s.records_checked,
            s.checked,
            s.matched,
            s.mismatched,
            s.unsupported,
            s.no_base,
            s.restored
        )?;
    }
    for mismatch in checker.mismatches() {
        writeln!(out, "{}", mismatch_line(mismatch))?;
    }
    out.flush()?;
    if let Some(e) = stop {
        eprintln!("pagectl redo-check: end of WAL: {e}");
    }
    let mismatched = checker.total_mismatched();
    if mismatched > 0 {
        bail!("{mismatched} block(s) mismatched");
    }
    Ok(())
}

fn mismatch_line(m: &Mismatch) -> String {
    let fork = match m.fork {
        ForkNumber::Main => "main",
        ForkNumber::Fsm => "fsm",
        ForkNumber::VisibilityMap => "vm",
        ForkNumber::Init => "init",
    };
    let what = match &m.error {
        Some(error) => format!("redo failed: {error}"),
        None => format!("first differing offsets {:?}", m.first_diffs),
    };
    format!(
        "MISMATCH lsn {} {}/{} blkref #{}: rel {}/{}/{} fork {} blk {}: {}",
        Lsn(m.start_lsn),
        m.rmgr,
        identify(m.rmid, m.info).unwrap_or("UNKNOWN"),
        m.block_id,
        m.rel.spc_node,
        m.rel.db_node,
        m.rel.rel_node,
        fork,
        m.blkno,
        what
    )
}
