//! `pagectl waldump`: decode WAL segment files like `pg_waldump`, one line
//! per record or (`--stats`) counts and sizes per resource manager and
//! record type in the categories of `pg_waldump --stats=record`.
//!
//! File handling lives here (the decoder crate does no I/O): segment files
//! are found, sorted by name, checked for contiguity, read one at a time and
//! fed to a [`SegmentDecoder`]. Decoding stops at the end of valid WAL (a
//! zeroed header, a recycled page, a torn record) the way `pg_waldump` does.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use postgres_wal::decode::{RecordLayout, BKPIMAGE_APPLY};
use postgres_wal::page::{is_valid_segment_size, XLogPageHeader};
use postgres_wal::rmgr::identify::{identify, rmgr_name};
use postgres_wal::rmgr::{parse_body, RecordBody};
use postgres_wal::stats::{StatsRow, WalStats};
use postgres_wal::{Lsn, RawRecord, WalConfig, WalError, WalStreamDecoder};

/// Arguments of `pagectl waldump`.
#[derive(clap::Args, Debug)]
#[command(after_help = STATS_HELP)]
pub struct Args {
    /// Print statistics per resource manager/record type instead of records.
    #[arg(long)]
    pub stats: bool,
    /// With --stats: print the statistics as JSON (implies --stats).
    #[arg(long)]
    pub json: bool,
    /// Segment files, or directories holding them (other files are ignored).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

const STATS_HELP: &str = "\
Output formats (stable; compared against pg_waldump by the test kit):
  --stats          the table of `pg_waldump --stats=record`, row for row:
                   `<Rmgr>/<TYPE>  N (%)  Record size (%)  FPI size (%)  Combined size (%)`
  --stats --json   a JSON array, one object per record type that occurred, in
                   pg_waldump order (by resource manager id, then type id):
                   [{\"rmgr\":\"Heap\",\"record_type\":\"INSERT+INIT\",\"count\":3,
                     \"record_bytes\":240,\"fpi_bytes\":0}, ...]
                   record_bytes = xl_tot_len minus image bytes; fpi_bytes = stored
                   (compressed) image bytes, as pg_waldump counts them.
Decoding starts at the first record boundary of the first segment and stops
at the end of valid WAL; the reason is printed on stderr and the exit status
is 0. I/O errors and non-contiguous segments exit non-zero.";

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let files = collect_segment_files(&args.paths)?;
    let segment_size = detect_segment_size(&files[0])?;
    let stats_mode = args.stats || args.json;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut stats = WalStats::new();
    let stop = decode_files(&files, segment_size, |raw, layout| {
        if stats_mode {
            stats.add(layout, raw.start_lsn, raw.end_lsn);
            Ok(())
        } else {
            writeln!(out, "{}", record_line(raw, layout)).context("writing to stdout")
        }
    })?;
    if stats_mode {
        if args.json {
            serde_json::to_writer_pretty(&mut out, &stats.rows())?;
            writeln!(out)?;
        } else {
            write_stats_table(&mut out, &stats)?;
        }
    }
    out.flush()?;
    if let Some(e) = stop {
        eprintln!("pagectl waldump: end of WAL: {e}");
    }
    Ok(())
}

/// Segment files named by `paths` (directories are listed), sorted by name.
pub fn collect_segment_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).with_context(|| format!("listing {path:?}"))? {
                let entry = entry?;
                let name = entry.file_name();
                if is_segment_name(&name.to_string_lossy()) && entry.path().is_file() {
                    files.push(entry.path());
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    files.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    if files.is_empty() {
        bail!("no WAL segment files found in {paths:?}");
    }
    // A segment named twice (a directory and a file in it): read it once.
    // Two different files of one name are two copies of one segment, and
    // which to trust is the caller's call.
    let mut unique: Vec<PathBuf> = Vec::with_capacity(files.len());
    for file in files {
        if let Some(previous) = unique.last() {
            if previous.file_name() == file.file_name() {
                if same_file(previous, &file) {
                    continue;
                }
                bail!(
                    "WAL segment {} is given twice, as {previous:?} and {file:?}; pass one of them",
                    file.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        unique.push(file);
    }
    Ok(unique)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the segment size from the long page header of `file`.
pub fn detect_segment_size(file: &Path) -> anyhow::Result<u64> {
    let mut head = [0u8; 40];
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {file:?}"))?;
    std::io::Read::read_exact(&mut f, &mut head).with_context(|| format!("reading {file:?}"))?;
    let header = XLogPageHeader::parse(&head)?;
    let long = header
        .long
        .with_context(|| format!("{file:?} does not start with a long WAL page header"))?;
    let size = u64::from(long.segment_size);
    if !is_valid_segment_size(size) {
        bail!("{file:?}: invalid segment size {size} in its page header");
    }
    Ok(size)
}

/// Decodes `files` in order, calling `on_record` for every valid record.
/// Returns the decoding error that ended the WAL, if any; I/O errors and
/// callback errors are returned as `Err`.
pub fn decode_files(
    files: &[PathBuf],
    segment_size: u64,
    mut on_record: impl FnMut(&RawRecord<'_>, &RecordLayout) -> anyhow::Result<()>,
) -> anyhow::Result<Option<WalError>> {
    let starts = segment_starts(files, segment_size)?;
    let Some(&first) = starts.first() else {
        return Ok(None);
    };
    let mut decoder = WalStreamDecoder::new(
        first,
        WalConfig {
            segment_size,
            system_id: None,
        },
    );
    // Files are read in chunks, not whole: decoding usually ends in the
    // last file long before its end (the rest is zeros or a recycled
    // segment's stale bytes), and memory stays bounded.
    for (file, start) in files.iter().zip(starts) {
        let mut f = std::fs::File::open(file).with_context(|| format!("opening {file:?}"))?;
        let len = f
            .metadata()
            .with_context(|| format!("stat {file:?}"))?
            .len();
        if len != segment_size {
            return Ok(Some(WalError::WrongSegmentLength {
                start,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                expected: segment_size,
            }));
        }
        loop {
            // Read straight into the decoder's buffer: one copy fewer.
            let n = decoder
                .feed_with(READ_CHUNK_BYTES, |buf| f.read(buf))
                .with_context(|| format!("reading {file:?}"))?;
            if n == 0 {
                break;
            }
            if let Some(stop) = drain_records(&mut decoder, &mut on_record)? {
                return Ok(Some(stop));
            }
        }
    }
    Ok(None)
}

/// Bytes read from a segment file at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Hands every complete record to `on_record`; returns the error that ends
/// the WAL, if one is reached.
fn drain_records(
    decoder: &mut WalStreamDecoder,
    on_record: &mut impl FnMut(&RawRecord<'_>, &RecordLayout) -> anyhow::Result<()>,
) -> anyhow::Result<Option<WalError>> {
    loop {
        let raw = match decoder.poll_raw() {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(e)),
        };
        match RecordLayout::parse(raw.bytes) {
            Ok(layout) => on_record(&raw, &layout)?,
            Err(source) => {
                return Ok(Some(WalError::Record {
                    lsn: raw.start_lsn,
                    source,
                }))
            }
        }
    }
}

/// The start LSN of each file, checking up front that they follow each
/// other without a gap (a missing segment is a usage error, not an end of
/// WAL).
fn segment_starts(files: &[PathBuf], segment_size: u64) -> anyhow::Result<Vec<Lsn>> {
    let mut starts: Vec<Lsn> = Vec::with_capacity(files.len());
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (_, start) = Lsn::from_wal_file_name(&name, segment_size)
            .with_context(|| format!("{file:?} is not named like a WAL segment"))?;
        if let Some(prev) = starts.last() {
            if prev.checked_add(segment_size) != Some(start) {
                bail!(
                    "{file:?} does not follow the previous segment (missing segment after {prev})"
                );
            }
        }
        starts.push(start);
    }
    Ok(starts)
}

const FORK_NAMES: [&str; 4] = ["main", "fsm", "vm", "init"];

/// One record in `pg_waldump`'s line format (the description part is the
/// record type only; block references as in its short format).
pub fn record_line(raw: &RawRecord<'_>, layout: &RecordLayout) -> String {
    let h = &layout.header;
    let fpi = layout.fpi_len();
    let id = match identify(h.rmid, h.info) {
        Some(id) => id.to_owned(),
        None => format!("UNKNOWN ({:x})", h.info & 0xF0),
    };
    let mut line = format!(
        "rmgr: {:<11} len (rec/tot): {:>6}/{:>6}, tx: {:>10}, lsn: {}, prev {}, desc: {} {}",
        rmgr_name(h.rmid),
        h.total_len.saturating_sub(fpi),
        h.total_len,
        h.xid,
        lsn_08(raw.start_lsn),
        lsn_08(h.prev),
        id,
        describe(raw)
    );
    for b in &layout.blocks {
        let r = b.rel;
        let _ = write!(
            line,
            ", blkref #{}: rel {}/{}/{}",
            b.block_id, r.spc_node, r.db_node, r.rel_node
        );
        if b.fork as u8 != 0 {
            let _ = write!(line, " fork {}", FORK_NAMES[b.fork as usize]);
        }
        let _ = write!(line, " blk {}", b.blkno);
        if let Some(image) = b.image {
            if image.info & BKPIMAGE_APPLY != 0 {
                line.push_str(" FPW");
            } else {
                line.push_str(" FPW for WAL verification");
            }
        }
    }
    line
}

/// Longest body description printed; typed bodies can carry long arrays.
const MAX_DESC_CHARS: usize = 300;

/// A short description of the typed body for the managers the decoder
/// parses (Rust debug form, cut at [`MAX_DESC_CHARS`]); empty for others.
fn describe(raw: &RawRecord<'_>) -> String {
    let text = match raw.decode() {
        Err(e) => format!("<undecodable: {e}>"),
        Ok(record) => match parse_body(&record) {
            Ok(RecordBody::Raw) => String::new(),
            Ok(body) => format!("{body:?}"),
            Err(e) => format!("<body error: {e}>"),
        },
    };
    match text.char_indices().nth(MAX_DESC_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// An LSN the way `pg_waldump` prints record positions (`%X/%08X`).
fn lsn_08(lsn: Lsn) -> String {
    format!("{:X}/{:08X}", lsn.0 >> 32, lsn.0 & 0xffff_ffff)
}

/// Writes the statistics table exactly as `pg_waldump --stats=record`.
pub fn write_stats_table(out: &mut impl std::io::Write, stats: &WalStats) -> std::io::Result<()> {
    let rows: Vec<StatsRow> = stats.rows();
    let total_count: u64 = rows.iter().map(|r| r.count).sum();
    let total_rec: u64 = rows.iter().map(|r| r.record_bytes).sum();
    let total_fpi: u64 = rows.iter().map(|r| r.fpi_bytes).sum();
    let total = total_rec + total_fpi;
    let (Some(start), Some(end)) = (stats.start, stats.end) else {
        return Ok(());
    };
    writeln!(out, "WAL statistics between {start} and {end}:")?;
    writeln!(
        out,
        "{:<27} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8}",
        "Type", "N", "(%)", "Record size", "(%)", "FPI size", "(%)", "Combined size", "(%)"
    )?;
    writeln!(
        out,
        "{:<27} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8}",
        "----", "-", "---", "-----------", "---", "--------", "---", "-------------", "---"
    )?;
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            100.0 * part as f64 / whole as f64
        }
    };
    for r in &rows {
        let combined = r.record_bytes + r.fpi_bytes;
        writeln!(
            out,
            "{:<27} {:>20} ({:>6.2}) {:>20} ({:>6.2}) {:>20} ({:>6.2}) {:>20} ({:>6.2})",
            format!("{}/{}", r.rmgr, r.record_type),
            r.count,
            pct(r.count, total_count),
            r.record_bytes,
            pct(r.record_bytes, total_rec),
            r.fpi_bytes,
            pct(r.fpi_bytes, total_fpi),
            combined,
            pct(combined, total)
        )?;
    }
    writeln!(
        out,
        "{:<27} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8} {:>20}",
        "", "--------", "", "--------", "", "--------", "", "--------"
    )?;
    writeln!(
        out,
        "{:<27} {:>20} {:<9}{:>20} {:<9}{:>20} {:<9}{:>20} {:<6}",
        "Total",
        total_count,
        "",
        total_rec,
        format!("[{:.2}%]", pct(total_rec, total)),
        total_fpi,
        format!("[{:.2}%]", pct(total_fpi, total)),
        total,
        "[100%]"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_named_twice_is_read_once_and_two_copies_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        let segment = dir.path().join(name);
        std::fs::write(&segment, b"x").unwrap();
        let files = collect_segment_files(&[dir.path().to_owned(), segment.clone()]).unwrap();
        assert_eq!(files, vec![segment.clone()]);

        let other = tempfile::tempdir().unwrap();
        let copy = other.path().join(name);
        std::fs::write(&copy, b"x").unwrap();
        let error = collect_segment_files(&[dir.path().to_owned(), copy])
            .unwrap_err()
            .to_string();
        assert!(error.contains("is given twice"), "{error}");
    }
}
