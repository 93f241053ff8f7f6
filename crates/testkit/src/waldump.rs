//! Running `pg_waldump --stats=record` and reading its table, so our own
//! decoder's statistics can be compared with PostgreSQL's, row for row.
//!
//! The table (PG15 `XLogDumpDisplayStats`) looks like
//!
//! ```text
//! WAL statistics between 0/1000028 and 0/2FFFFF0:
//! Type                                           N      (%)          Record size      (%) ...
//! ----                                           -      ---          -----------      --- ...
//! XLOG/CHECKPOINT_SHUTDOWN                       1 (  0.04)                  114 (  0.02) ...
//! Heap/INSERT+INIT                              12 (  0.50)                 1032 (  0.19) ...
//!                                         --------                      --------          ...
//! Total                                       2395                        540870 [70.51%] ...
//! ```
//!
//! Names are left-aligned in 27 columns but may be longer, and percentages
//! are printed as `(  0.04)` with inner spaces, so rows are parsed from the
//! right: four `number (percent)` groups, the rest is the name.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use postgres_wal::Lsn;

use crate::error::{Error, Result};
use crate::install::{run_capture_both, PgInstall};
use crate::wal::CollectedWal;

/// One row of per-record-type WAL statistics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct WalStatRow {
    /// Resource manager name as pg_waldump prints it (`Heap`, `XLOG`, …).
    pub rmgr: String,
    /// Record type (`INSERT+INIT`); empty in per-rmgr (`--stats`) tables.
    pub record_type: String,
    /// Number of records.
    pub count: u64,
    /// Bytes of the records excluding full-page images.
    pub record_bytes: u64,
    /// Bytes of (possibly compressed) full-page images.
    pub fpi_bytes: u64,
}

impl WalStatRow {
    /// `Rmgr/TYPE`, the key rows are compared by.
    pub fn key(&self) -> String {
        if self.record_type.is_empty() {
            self.rmgr.clone()
        } else {
            format!("{}/{}", self.rmgr, self.record_type)
        }
    }
}

/// A parsed `pg_waldump --stats[=record]` report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgWaldumpStats {
    /// Start of the first record counted.
    pub start: Option<Lsn>,
    /// End of the last record counted.
    pub end: Option<Lsn>,
    /// Rows in print order (pg_waldump prints rows with count 0 in
    /// per-rmgr mode; they are kept).
    pub rows: Vec<WalStatRow>,
    /// The `Total` line's record count.
    pub total_count: u64,
}

/// Parses the stats report printed on stdout by pg_waldump.
pub fn parse_pg_waldump_stats(output: &str) -> Result<PgWaldumpStats> {
    let bad = |line: &str| Error::UnexpectedOutput {
        what: "pg_waldump --stats".to_owned(),
        output: line.to_owned(),
    };
    let mut stats = PgWaldumpStats::default();
    let mut in_rows = false;
    let mut saw_total = false;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some(range) = trimmed.strip_prefix("WAL statistics between ") {
            let (start, end) = parse_range(range).ok_or_else(|| bad(line))?;
            stats.start = Some(start);
            stats.end = Some(end);
        } else if trimmed.starts_with("----") && !in_rows && !saw_total {
            in_rows = true; // the header's underline
        } else if in_rows && trimmed.starts_with("--------") {
            in_rows = false; // the separator before Total
        } else if in_rows {
            let (name, numbers) = split_row(line).ok_or_else(|| bad(line))?;
            let (rmgr, record_type) = name.split_once('/').unwrap_or((name, ""));
            stats.rows.push(WalStatRow {
                rmgr: rmgr.to_owned(),
                record_type: record_type.to_owned(),
                count: numbers[0],
                record_bytes: numbers[1],
                fpi_bytes: numbers[2],
            });
        } else if let Some(rest) = trimmed.strip_prefix("Total ") {
            let count = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            stats.total_count = count.ok_or_else(|| bad(line))?;
            saw_total = true;
        }
    }
    if !saw_total {
        return Err(bad(output));
    }
    Ok(stats)
}

/// `0/1000028 and 0/2FFFFF0:` → the two LSNs.
fn parse_range(text: &str) -> Option<(Lsn, Lsn)> {
    let (start, end) = text.trim_end_matches(':').split_once(" and ")?;
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?))
}

/// Splits a data row into its name and the four numbers (count, record
/// size, FPI size, combined size), reading `N (pct)` groups from the right.
fn split_row(line: &str) -> Option<(&str, [u64; 4])> {
    let mut rest = line;
    let mut numbers = [0u64; 4];
    for slot in numbers.iter_mut().rev() {
        rest = rest.trim_end();
        let open = rest.strip_suffix(')')?.rfind('(')?;
        let before = rest[..open].trim_end();
        let digits_start = before
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        *slot = before[digits_start..].parse().ok()?;
        rest = &before[..digits_start];
    }
    let name = rest.trim();
    (!name.is_empty()).then_some((name, numbers))
}

/// Runs `pg_waldump --stats=record` over the collected segments (as the
/// current user: the copies are ours) and parses its report. pg_waldump
/// prints the table even when it then fails on a bad record, so a non-zero
/// exit is reported as an error carrying its stderr.
pub fn pg_waldump_stats(install: &PgInstall, wal: &CollectedWal) -> Result<PgWaldumpStats> {
    let (first, last) = match (wal.first_segment(), wal.last_segment()) {
        (Some(first), Some(last)) => (first, last),
        _ => {
            return Err(Error::UnexpectedOutput {
                what: "collected WAL".to_owned(),
                output: "no segments".to_owned(),
            })
        }
    };
    pg_waldump_stats_range(install, &wal.dir, first, last)
}

/// Like [`pg_waldump_stats`] for segments `first..=last` in `dir`.
pub fn pg_waldump_stats_range(
    install: &PgInstall,
    dir: &Path,
    first: &str,
    last: &str,
) -> Result<PgWaldumpStats> {
    let mut command = Command::new(install.bin("pg_waldump"));
    command
        .arg("--path")
        .arg(dir)
        .arg("--stats=record")
        .args([first, last]);
    let (stdout, _stderr) = run_capture_both(&mut command, None)?;
    parse_pg_waldump_stats(&stdout)
}

/// One record type on which two statistics disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatMismatch {
    /// `Rmgr/TYPE`.
    pub key: String,
    /// `(count, record_bytes, fpi_bytes)` on the expected side (zeros if absent).
    pub expected: (u64, u64, u64),
    /// The same on the actual side.
    pub actual: (u64, u64, u64),
}

/// Compares two sets of rows by `Rmgr/TYPE` (rows with count 0 are ignored);
/// returns every key whose count or sizes differ, sorted by key.
pub fn compare_stats(expected: &[WalStatRow], actual: &[WalStatRow]) -> Vec<StatMismatch> {
    let index = |rows: &[WalStatRow]| {
        let mut map: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.count > 0) {
            let entry = map.entry(row.key()).or_default();
            entry.0 += row.count;
            entry.1 += row.record_bytes;
            entry.2 += row.fpi_bytes;
        }
        map
    };
    let expected = index(expected);
    let actual = index(actual);
    let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let e = expected.get(key).copied().unwrap_or_default();
            let a = actual.get(key).copied().unwrap_or_default();
            (e != a).then(|| StatMismatch {
                key: key.clone(),
                expected: e,
                actual: a,
            })
        })
        .collect()
}

/// A readable table of mismatches for a test failure message.
pub fn format_mismatches(mismatches: &[StatMismatch]) -> String {
    let mut text = format!(
        "{:<32} {:>24} {:>24}\n",
        "record type", "expected n/rec/fpi", "actual n/rec/fpi"
    );
    for m in mismatches {
        let triple = |t: (u64, u64, u64)| format!("{}/{}/{}", t.0, t.1, t.2);
        text.push_str(&format!(
            "{:<32} {:>24} {:>24}\n",
            m.key,
            triple(m.expected),
            triple(m.actual)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
WAL statistics between 0/1000028 and 0/2FFFFF0:
Type                                           N      (%)          Record size      (%)             FPI size      (%)        Combined size      (%)
----                                           -      ---          -----------      ---             --------      ---        -------------      ---
XLOG/CHECKPOINT_SHUTDOWN                       1 (  0.04)                  114 (  0.02)                    0 (  0.00)                  114 (  0.01)
XLOG/FPI_FOR_HINT                             20 (  0.83)                 1020 (  0.19)               151800 ( 67.40)               152820 ( 19.92)
Heap/INSERT+INIT                              12 (  0.50)                 1032 (  0.19)                    0 (  0.00)                 1032 (  0.13)
Transaction/COMMIT_PREPARED                    2 (  0.08)                  100 (  0.02)                    0 (  0.00)                  100 (  0.01)
Btree/A_VERY_LONG_RECORD_TYPE_NAME_THAT_OVERFLOWS 7 (100.00)               70 (  0.01)                    0 (  0.00)                   70 (  0.01)
XLOG/UNKNOWN (e0)                              3 (  0.10)                   30 (  0.01)                    0 (  0.00)                   30 (  0.01)
                                        --------                      --------                      --------                      --------
Total                                         45                        540870 [70.51%]               226279 [29.49%]               767149 [100%]
";

    #[test]
    fn parses_rows_from_the_right() {
        let stats = parse_pg_waldump_stats(SAMPLE).unwrap();
        assert_eq!(stats.start, Some(Lsn(0x1000028)));
        assert_eq!(stats.end, Some(Lsn(0x2FFFFF0)));
        assert_eq!(stats.total_count, 45);
        assert_eq!(stats.rows.len(), 6);
        assert_eq!(
            stats.rows[1],
            WalStatRow {
                rmgr: "XLOG".into(),
                record_type: "FPI_FOR_HINT".into(),
                count: 20,
                record_bytes: 1020,
                fpi_bytes: 151800,
            }
        );
        assert_eq!(stats.rows[3].key(), "Transaction/COMMIT_PREPARED");
        assert_eq!(
            stats.rows[4].record_type,
            "A_VERY_LONG_RECORD_TYPE_NAME_THAT_OVERFLOWS"
        );
        assert_eq!(stats.rows[4].count, 7);
        assert_eq!(stats.rows[5].record_type, "UNKNOWN (e0)");
        assert_eq!(
            stats.rows.iter().map(|r| r.count).sum::<u64>(),
            stats.total_count
        );
    }

    #[test]
    fn per_rmgr_rows_have_no_type() {
        let text = "Type N\n---- -\nHeap2                                          0 (  0.00)                    0 (  0.00)                    0 (  0.00)                    0 (  0.00)\n   --------\nTotal 0 0 [0%] 0 [0%] 0 [100%]\n";
        let stats = parse_pg_waldump_stats(text).unwrap();
        assert_eq!(stats.rows[0].rmgr, "Heap2");
        assert_eq!(stats.rows[0].record_type, "");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_pg_waldump_stats("").is_err());
        assert!(parse_pg_waldump_stats("Type\n----\nHeap/INSERT 12 (oops)\n").is_err());
        assert!(
            parse_pg_waldump_stats("Type\n----\n 1 ( 1.0) 2 ( 1.0) 3 ( 1.0) 4 ( 1.0)\n").is_err()
        );
    }

    #[test]
    fn compare_reports_differences_only() {
        let row = |key: &str, count| {
            let (rmgr, record_type) = key.split_once('/').unwrap();
            WalStatRow {
                rmgr: rmgr.into(),
                record_type: record_type.into(),
                count,
                record_bytes: count * 10,
                fpi_bytes: 0,
            }
        };
        let expected = [
            row("Heap/INSERT", 5),
            row("Heap/DELETE", 2),
            row("XLOG/FPI", 1),
        ];
        let actual = [
            row("Heap/DELETE", 2),
            row("Heap/INSERT", 4),
            row("Btree/X", 0),
        ];
        let mismatches = compare_stats(&expected, &actual);
        let keys: Vec<&str> = mismatches.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["Heap/INSERT", "XLOG/FPI"]);
        assert_eq!(mismatches[0].expected, (5, 50, 0));
        assert_eq!(mismatches[0].actual, (4, 40, 0));
        assert!(compare_stats(&expected, &expected).is_empty());
        assert!(format_mismatches(&mismatches).contains("Heap/INSERT"));
    }
}
