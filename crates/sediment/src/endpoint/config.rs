//! The settings sediment adds to an endpoint's `postgresql.conf` and
//! `pg_hba.conf`. The base backup ships an empty `postgresql.conf`: the
//! endpoint alone decides how its server runs.

use std::path::Path;

use anyhow::Context;

/// Fallback for `wal_consistency_checking` when the pageserver does not say
/// which resource managers it redoes natively: every record then carries the
/// after-images of its blocks, which ingest can store without redo.
pub const WCC_FALLBACK: &str = "all";

/// How an endpoint's server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Frozen at an LSN, no writes.
    ReadOnly,
    /// A primary streaming its WAL to the pageserver, which it waits for on
    /// commit. `wal_consistency_checking` is what the pageserver asked for.
    Writable {
        /// Value of `wal_consistency_checking`.
        wal_consistency_checking: String,
    },
}

/// The lines appended to `postgresql.conf`.
pub fn postgresql_conf(name: &str, port: u16, socket_dir: &Path, mode: &Mode) -> String {
    let mut settings: Vec<(&str, String)> = vec![
        ("port", port.to_string()),
        ("listen_addresses", "127.0.0.1".into()),
        ("unix_socket_directories", socket_dir.display().to_string()),
        // A branch point may fall while a prepared transaction is open; a
        // server with 0 here refuses to start on such a data directory.
        ("max_prepared_transactions", "10".into()),
        ("shared_buffers", "128MB".into()),
        // The data directory is disposable: every start builds a fresh one
        // from the pageserver, never recovers from this one after a crash of
        // the host (a crash of the server alone loses nothing: unsynced
        // writes sit in the page cache). What a writable endpoint's commit
        // must survive, the pageserver has fsynced before it acknowledges
        // (`synchronous_commit = on` below), so a local fsync on top would
        // only put a second one in series in every commit. Neon's computes
        // run with `fsync = off` for the same reason.
        ("fsync", "off".into()),
        // Zero-filling a new WAL segment reserves its blocks so that later
        // fdatasyncs of it commit no allocation; without fsyncs it is only
        // 16 MB more to write per segment.
        ("wal_init_zero", "off".into()),
        // Full-page writes guard a data directory's pages against being torn
        // by a crash of the host, for crash recovery to start from; this
        // one is never recovered from. The pageserver rebuilds every page
        // by native redo from its previous version, so the images only
        // cost: on pgbench after a checkpoint, up to half the WAL, and
        // zstd for every first change of a page on the commit path. Neon
        // found the same (neondatabase/neon#1226). Consequence: a stock
        // standby that streams from an endpoint gets no full-page images
        // either.
        ("full_page_writes", "off".into()),
    ];
    match mode {
        Mode::ReadOnly => settings.push(("default_transaction_read_only", "on".into())),
        Mode::Writable {
            wal_consistency_checking,
        } => settings.extend([
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("wal_compression", "zstd".into()),
            ("wal_consistency_checking", wal_consistency_checking.clone()),
            // The pageserver connects with application_name=pageserver; a
            // commit returns only once it reported the commit record durable.
            ("synchronous_standby_names", "pageserver".into()),
            ("synchronous_commit", "on".into()),
            // The pageserver's replication slot retains what it still needs;
            // this only bounds what is kept beyond that.
            ("wal_keep_size", "256MB".into()),
        ]),
    }
    let mut text = format!("\n# Added by sediment for endpoint {name}\n");
    for (key, value) in settings {
        text.push_str(&format!("{key} = '{}'\n", quote(&value)));
    }
    text
}

/// Escapes a value for a single-quoted `postgresql.conf` string.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

/// The `wal_consistency_checking` value to use from the pageserver's
/// `/v1/status` answer: its `wal_consistency_checking` field when it is a
/// plausible list of resource manager names — empty when the pageserver
/// redoes every checkable manager natively — else [`WCC_FALLBACK`].
pub fn wal_consistency_checking(status: &serde_json::Value) -> String {
    match status["wal_consistency_checking"].as_str() {
        Some(value)
            if value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b',' || b == b'_' || b == b' ') =>
        {
            value.trim().to_owned()
        }
        _ => WCC_FALLBACK.to_owned(),
    }
}

/// Appends `text` to `pgdata/postgresql.conf`.
pub fn append_postgresql_conf(pgdata: &Path, text: &str) -> anyhow::Result<()> {
    let path = pgdata.join("postgresql.conf");
    let mut current = std::fs::read_to_string(&path).unwrap_or_default();
    current.push_str(text);
    std::fs::write(&path, current).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writable_settings_stream_to_the_pageserver_synchronously() {
        let text = postgresql_conf(
            "main",
            55432,
            Path::new("/tmp/ep"),
            &Mode::Writable {
                wal_consistency_checking: "hash,gin".into(),
            },
        );
        for line in [
            "port = '55432'",
            "unix_socket_directories = '/tmp/ep'",
            "wal_level = 'replica'",
            "synchronous_standby_names = 'pageserver'",
            "wal_consistency_checking = 'hash,gin'",
            "wal_compression = 'zstd'",
            "synchronous_commit = 'on'",
            "fsync = 'off'",
            "wal_init_zero = 'off'",
            "full_page_writes = 'off'",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("default_transaction_read_only"));
        let read_only = postgresql_conf("ro", 1, Path::new("/x'y"), &Mode::ReadOnly);
        assert!(read_only.contains("default_transaction_read_only = 'on'"));
        assert!(read_only.contains("'/x''y'"), "{read_only}");
        assert!(!read_only.contains("synchronous_standby_names"));
    }

    #[test]
    fn consistency_checking_comes_from_status_or_falls_back() {
        let wcc = |v| wal_consistency_checking(&v);
        assert_eq!(
            wcc(json!({"wal_consistency_checking": "hash,gin,gist,spgist"})),
            "hash,gin,gist,spgist"
        );
        assert_eq!(wcc(json!({"id": 1})), "all");
        // All managers native: no consistency checking at all.
        assert_eq!(wcc(json!({"wal_consistency_checking": ""})), "");
        assert_eq!(wcc(json!({"wal_consistency_checking": null})), "all");
        assert_eq!(wcc(json!({"wal_consistency_checking": "x'\n"})), "all");
    }
}
