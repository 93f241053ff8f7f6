//! The backup manifest PostgreSQL 15 writes next to a base backup
//! (`backup_manifest`, version 1), so `pg_basebackup` can be run without
//! `--no-manifest` and `pg_verifybackup` can check what it received.
//!
//! Layout, as `backup_manifest.c` writes it: a JSON object with the files
//! (path, size, last-modified time in GMT, CRC-32C of the contents in
//! little-endian hex), the WAL range needed (our synthesised checkpoint
//! record) and a SHA-256 of every byte before the `Manifest-Checksum` key.

use postgres_wal::Lsn;
use sha2::{Digest, Sha256};

/// Collects file entries while the archive is written.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    entries: Vec<String>,
}

impl ManifestBuilder {
    /// Records one regular file of the archive.
    pub fn add_file(&mut self, path: &str, size_bytes: u64, mtime: u64, crc32c: u32) {
        self.entries.push(format!(
            "{{ \"Path\": {}, \"Size\": {size_bytes}, \"Last-Modified\": \"{}\", \
             \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}",
            json_string(path),
            gmt_time(mtime),
            hex::encode(crc32c.to_le_bytes()),
        ));
    }

    /// The finished manifest: WAL from `start` to `end` on timeline `tli`.
    pub fn finish(self, tli: u32, start: Lsn, end: Lsn) -> Vec<u8> {
        let mut text = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [");
        for (i, entry) in self.entries.iter().enumerate() {
            text.push_str(if i == 0 { "\n" } else { ",\n" });
            text.push_str(entry);
        }
        text.push_str("\n],\n\"WAL-Ranges\": [\n");
        text.push_str(&format!(
            "{{ \"Timeline\": {tli}, \"Start-LSN\": \"{start}\", \"End-LSN\": \"{end}\" }}"
        ));
        text.push_str("\n],\n");
        let checksum = hex::encode(Sha256::digest(text.as_bytes()));
        text.push_str(&format!("\"Manifest-Checksum\": \"{checksum}\"}}\n"));
        text.into_bytes()
    }
}

/// A JSON string literal (PostgreSQL's `escape_json`).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%Y-%m-%d %H:%M:%S GMT` of a Unix time.
fn gmt_time(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S GMT")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_checksum_covers_everything_before_it() {
        let mut builder = ManifestBuilder::default();
        builder.add_file("PG_VERSION", 3, 0, crc32c::crc32c(b"15\n"));
        builder.add_file("a\"b", 0, 86_400, 0);
        let text = String::from_utf8(builder.finish(1, Lsn(0x100_0028), Lsn(0x100_009A))).unwrap();
        assert!(text.starts_with("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{ \"Path\": \"PG_VERSION\", \"Size\": 3, \"Last-Modified\": \"1970-01-01 00:00:00 GMT\""));
        assert!(text.contains("\"Path\": \"a\\\"b\""));
        assert!(text.contains("1970-01-02 00:00:00 GMT"));
        assert!(text.contains("\"Start-LSN\": \"0/1000028\", \"End-LSN\": \"0/100009A\""));
        let at = text.find("\"Manifest-Checksum\"").unwrap();
        let expected = hex::encode(Sha256::digest(&text.as_bytes()[..at]));
        assert!(text[at..].contains(&expected));
        assert!(text.ends_with("\"}\n"));
    }
}
