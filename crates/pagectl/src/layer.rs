//! `pagectl layer`: inspect the storage layer files of a timeline.
//!
//! - `pagectl layer ls DIR` lists the layer files of a timeline directory
//!   (and its metadata), opening each to verify header and index.
//! - `pagectl layer dump FILE` prints the header and every version in a
//!   layer file, verifying every checksum; a corrupt file exits non-zero
//!   with an error naming it.
//!
//! The format is documented in `docs/storage-format.md`; this module only
//! reads it through the `storage` crate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use storage::io::{FileIo, StdFileIo};
use storage::layer::file::LayerFile;
use storage::metadata::{TimelineMetadata, METADATA_FILE_NAME};
use storage::{LayerDesc, LayerKind, Value};

/// Arguments of `pagectl layer`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: LayerCommand,
}

/// The `layer` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum LayerCommand {
    /// List the layer files (and metadata) of a timeline directory.
    Ls {
        /// A timeline directory (`<repo>/timelines/<id>`).
        dir: PathBuf,
    },
    /// Print the header and every version of one layer file.
    Dump {
        /// The layer file.
        file: PathBuf,
        /// Also print the first bytes of every value in hex.
        #[arg(long)]
        values: bool,
    },
}

/// Runs the subcommand, printing to stdout.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let output = match &args.command {
        LayerCommand::Ls { dir } => ls(dir)?,
        LayerCommand::Dump { file, values } => dump(file, *values)?,
    };
    print!("{output}");
    Ok(())
}

/// The listing of a timeline directory.
pub fn ls(dir: &Path) -> anyhow::Result<String> {
    let io = StdFileIo;
    let mut out = String::new();
    let metadata_path = dir.join(METADATA_FILE_NAME);
    if let Ok(bytes) = io.read_file(&metadata_path) {
        let metadata = TimelineMetadata::decode(&bytes)
            .with_context(|| format!("{} is corrupt", metadata_path.display()))?;
        write_metadata(&mut out, &metadata);
    }
    let entries = io
        .list_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?;
    let _ = writeln!(
        out,
        "{:<6} {:>10} {:>10}  {:<33}  key range",
        "kind", "entries", "bytes", "LSN range"
    );
    for entry in entries {
        let Some(desc) = LayerDesc::parse_file_name(&entry.name) else {
            continue;
        };
        let path = dir.join(&entry.name);
        let file = LayerFile::open(&io, &path, Some(&desc))?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<6} {:>10} {:>10}  {:<33}  {}..{}",
            kind_name(desc.kind),
            file.index().len(),
            size,
            lsn_range(&desc),
            desc.key_range.start,
            desc.key_range.end
        );
    }
    Ok(out)
}

fn write_metadata(out: &mut String, m: &TimelineMetadata) {
    let ancestor = m
        .ancestor
        .map_or("none".to_string(), |(id, lsn)| format!("{id} at {lsn}"));
    let _ = writeln!(out, "metadata: pg_version {}", m.pg_version);
    let _ = writeln!(
        out,
        "  disk_consistent_lsn {}  prev_record_lsn {}",
        m.disk_consistent_lsn, m.prev_record_lsn
    );
    let _ = writeln!(
        out,
        "  gc_cutoff {}  initdb_lsn {}",
        m.gc_cutoff, m.initdb_lsn
    );
    let _ = writeln!(out, "  ancestor {ancestor}");
}

/// The full dump of one layer file; every value is read and verified.
pub fn dump(path: &Path, values: bool) -> anyhow::Result<String> {
    let file = LayerFile::open(&StdFileIo, path, None)?;
    let header = file.header();
    let desc = &header.desc;
    let mut out = String::new();
    let _ = writeln!(out, "file: {}", path.display());
    let _ = writeln!(out, "format version: {}", header.format_version);
    let _ = writeln!(out, "kind: {}", kind_name(desc.kind));
    let _ = writeln!(
        out,
        "key range: {}..{}",
        desc.key_range.start, desc.key_range.end
    );
    let _ = writeln!(out, "LSN range: {}", lsn_range(desc));
    let _ = writeln!(out, "entries: {}", header.entry_count);
    for (position, entry) in file.index().iter().enumerate() {
        let value = file.read_value(position, None)?;
        let _ = writeln!(
            out,
            "{} {:>12} {:?} {}",
            entry.key,
            entry.lsn.to_string(),
            entry.key.kind(),
            describe(&value)
        );
        if values {
            let _ = writeln!(out, "    {}", hex_prefix(&value.encode()[1..], 64));
        }
    }
    Ok(out)
}

fn kind_name(kind: LayerKind) -> &'static str {
    match kind {
        LayerKind::Delta => "delta",
        LayerKind::Image => "image",
    }
}

fn lsn_range(desc: &LayerDesc) -> String {
    match desc.kind {
        LayerKind::Delta => format!("{}..{}", desc.lsn_range.start, desc.lsn_range.end),
        LayerKind::Image => format!("@{}", desc.lsn_range.start),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Image(b) => format!("image {} bytes", b.len()),
        Value::WalRecord { will_init, rec } => {
            format!(
                "wal-record {} bytes{}",
                rec.len(),
                if *will_init { " will-init" } else { "" }
            )
        }
        Value::Derived(op) => format!("derived {op:?}"),
        other => format!("{other:?}"),
    }
}

fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_wal::Lsn;
    use storage::{Key, Repository, RepositoryConfig, TimelineId};

    fn timeline_dir(repo_dir: &Path) -> PathBuf {
        let repo = Repository::open(repo_dir, RepositoryConfig::default()).unwrap();
        let timeline = repo
            .create_timeline(TimelineId([3; 16]), 15, Lsn(0x10))
            .unwrap();
        let mut writer = timeline.writer();
        writer
            .put(
                Key::checkpoint(),
                Lsn(0x10),
                Value::Image(vec![1, 2, 3].into()),
            )
            .unwrap();
        writer
            .put(
                Key::control_file(),
                Lsn(0x10),
                Value::Image(vec![4; 100].into()),
            )
            .unwrap();
        writer.finish(Lsn(0x10)).unwrap();
        timeline.freeze_and_flush().unwrap();
        timeline
            .create_image_layer(Key::MIN..Key::MAX, Lsn(0x10))
            .unwrap();
        timeline.dir().to_owned()
    }

    #[test]
    fn ls_lists_layers_and_metadata() {
        let repo_dir = tempfile::tempdir().unwrap();
        let dir = timeline_dir(repo_dir.path());
        let out = ls(&dir).unwrap();
        assert!(out.contains("disk_consistent_lsn 0/10"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("delta ") && l.contains("0/1..0/11")),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("image ") && l.contains("@0/10")),
            "{out}"
        );
    }

    #[test]
    fn dump_prints_every_version_and_rejects_corruption() {
        let repo_dir = tempfile::tempdir().unwrap();
        let dir = timeline_dir(repo_dir.path());
        let delta = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("delta_")
            })
            .unwrap();
        let out = dump(&delta, true).unwrap();
        assert!(out.contains("entries: 2"), "{out}");
        assert!(out.contains("Checkpoint image 3 bytes"), "{out}");
        assert!(out.contains("ControlFile image 100 bytes"), "{out}");
        let mut bytes = std::fs::read(&delta).unwrap();
        bytes[140] ^= 1;
        std::fs::write(&delta, bytes).unwrap();
        let err = dump(&delta, false).unwrap_err().to_string();
        assert!(err.contains(&*delta.to_string_lossy()), "{err}");
    }
}
