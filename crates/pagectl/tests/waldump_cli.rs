//! `pagectl waldump` on synthetic segment files whose contents are known
//! exactly: the `--stats --json` contract the test kit relies on, the text
//! table, per-record lines, and a clean stop at the end of valid WAL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use postgres_wal::testwal::WalWriter;
use postgres_wal::Lsn;

const SEG: u64 = 1 << 20;

/// Two segments: heap inserts (one with INIT_PAGE), an XACT commit with the
/// HAS_INFO flag, a switch, and a record in the second segment.
fn write_segments(dir: &Path) {
    let start = Lsn(SEG);
    let mut w = WalWriter::new(start, SEG, 99);
    w.append(10, 0x00, 700, &[], &[1u8; 100]);
    w.append(10, 0x80, 700, &[], &[2u8; 50]);
    w.append(1, 0x80, 700, &[], &[0u8; 12]);
    w.append(0, 0x40, 0, &[], &[]);
    w.append(10, 0x00, 701, &[], &[3u8; 10]);
    w.pad_to_segment_end();
    let bytes = w.bytes();
    for (i, chunk) in bytes.chunks(SEG as usize).enumerate() {
        let lsn = Lsn(start.0 + i as u64 * SEG);
        std::fs::write(dir.join(lsn.wal_file_name(1, SEG)), chunk).unwrap();
    }
    std::fs::write(dir.join("00000002.history"), b"ignored").unwrap();
}

fn pagectl(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_pagectl"))
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
}

#[test]
fn stats_json_has_one_row_per_record_type() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path());
    let (stdout, stderr, ok) =
        pagectl(&["waldump", "--stats", "--json", dir.path().to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("end of WAL"), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let find = |rmgr: &str, ty: &str| {
        rows.iter()
            .find(|r| r["rmgr"] == rmgr && r["record_type"] == ty)
            .unwrap_or_else(|| panic!("no {rmgr}/{ty} in {stdout}"))
    };
    assert_eq!(find("Heap", "INSERT")["count"], 2);
    assert_eq!(find("Heap", "INSERT+INIT")["count"], 1);
    // XACT's HAS_INFO bit does not make a separate category.
    assert_eq!(find("Transaction", "COMMIT")["count"], 1);
    assert_eq!(find("XLOG", "SWITCH")["count"], 1);
    assert_eq!(rows.len(), 4);
    // 24-byte header + 2-byte short data header + 100 bytes of data.
    assert_eq!(find("Heap", "INSERT")["record_bytes"], 126 + 36);
    assert_eq!(find("Heap", "INSERT")["fpi_bytes"], 0);
    // pg_waldump order: by resource manager id.
    assert_eq!(rows[0]["rmgr"], "XLOG");
}

#[test]
fn text_stats_and_record_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path());
    let path = dir.path().to_str().unwrap();
    let (stdout, _, ok) = pagectl(&["waldump", "--stats", path]);
    assert!(ok);
    assert!(
        stdout.starts_with("WAL statistics between 0/100028 and"),
        "{stdout}"
    );
    let insert_init = stdout
        .lines()
        .find(|l| l.starts_with("Heap/INSERT+INIT "))
        .unwrap();
    assert_eq!(insert_init.split_whitespace().nth(1), Some("1"));
    assert!(stdout.lines().last().unwrap().starts_with("Total"));

    let (stdout, _, ok) = pagectl(&["waldump", path]);
    assert!(ok);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("rmgr: Heap        len (rec/tot):    126/   126, tx:        700, lsn: 0/00100028, prev 0/00000000, desc: INSERT"));
    assert!(lines[3].contains("desc: SWITCH"));
    assert!(lines[4].contains("lsn: 0/00200028"), "{}", lines[4]);
}

#[test]
fn missing_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path());
    let extra = Lsn(4 * SEG).wal_file_name(1, SEG);
    std::fs::write(dir.path().join(extra), vec![0u8; SEG as usize]).unwrap();
    let (_, stderr, ok) = pagectl(&["waldump", "--stats", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("does not follow"), "{stderr}");
}
