//! Import: a cleanly shut down PostgreSQL 15 data directory (normally fresh
//! from `initdb`) becomes versions of every key at its checkpoint LSN.
//!
//! Everything a base backup needs is stored (see [`crate::layout`]); files
//! PostgreSQL rebuilds on its own (`pg_internal.init`, statistics, WAL,
//! configuration, `postmaster.*`) are not.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use postgres_wal::control::{ControlFile, DbState};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::slru::{self, SlruKind};
use postgres_wal::Lsn;
use storage::{Key, Timeline, TimelineWriter, Value};

use crate::error::ImportError;
use crate::layout::{self, DEFAULT_TABLESPACE_OID, GLOBAL_TABLESPACE_OID, RELSEG_SIZE_BLOCKS};

/// What an import stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// The LSN every version was stored at (the checkpoint of `pg_control`).
    pub lsn: Lsn,
    /// Databases found (not counting the shared catalogs).
    pub databases: usize,
    /// Relation forks stored.
    pub relation_forks: usize,
    /// Relation pages stored.
    pub relation_pages: u64,
    /// SLRU pages stored.
    pub slru_pages: u64,
    /// Files present in the directory but not stored, with the reason.
    pub skipped: Vec<String>,
}

/// Reads `pgdata` and stores it on `timeline` at the checkpoint LSN of its
/// `pg_control`, then flushes so it survives a restart. The timeline must
/// have no data at or above that LSN: normally a fresh root timeline, but a
/// later clean shutdown of a cluster started from one of its base backups
/// also imports, as a new version of every file (WAL ingest is the normal
/// way to add versions; this one serves tests and repairs).
pub fn import_datadir(timeline: &Timeline, pgdata: &Path) -> Result<ImportStats, ImportError> {
    let control_path = pgdata.join("global/pg_control");
    let control_bytes = read_file(&control_path)?;
    let control = ControlFile::parse(&control_bytes)?;
    if control.state != DbState::Shutdowned {
        return Err(ImportError::NotShutDown(format!("{:?}", control.state)));
    }
    let lsn = Lsn(control.checkpoint);
    let last_record_lsn = timeline.last_record_lsn();
    if last_record_lsn >= lsn {
        return Err(ImportError::TimelineNotEmpty {
            lsn,
            last_record_lsn,
        });
    }
    let mut stats = ImportStats {
        lsn,
        ..ImportStats::default()
    };
    let mut writer = timeline.writer();
    writer_put(&mut writer, Key::control_file(), lsn, control_bytes)?;
    let checkpoint = control.checkpoint_copy.serialize().to_vec();
    writer_put(&mut writer, Key::checkpoint(), lsn, checkpoint)?;

    import_relations(&mut writer, lsn, pgdata, &mut stats)?;
    for kind in SlruKind::ALL {
        import_slru(&mut writer, lsn, pgdata, kind, &mut stats)?;
    }
    import_twophase(&mut writer, lsn, pgdata)?;
    writer.finish(lsn)?;
    timeline.freeze_and_flush()?;
    Ok(stats)
}

/// Where one database's files are and which (spc, db) they belong to.
struct DbLocation {
    spc_node: u32,
    db_node: u32,
    dir: PathBuf,
}

/// The global catalog, every `base/<db>` and every tablespace database.
fn database_locations(pgdata: &Path) -> Result<Vec<DbLocation>, ImportError> {
    let mut locations = vec![DbLocation {
        spc_node: GLOBAL_TABLESPACE_OID,
        db_node: 0,
        dir: pgdata.join("global"),
    }];
    for (db_node, dir) in numbered_subdirs(&pgdata.join("base"))? {
        locations.push(DbLocation {
            spc_node: DEFAULT_TABLESPACE_OID,
            db_node,
            dir,
        });
    }
    let tblspc = pgdata.join("pg_tblspc");
    if tblspc.is_dir() {
        for (spc_node, link) in numbered_subdirs(&tblspc)? {
            let version_dir = link.join(layout::TABLESPACE_VERSION_DIRECTORY);
            if !version_dir.is_dir() {
                continue;
            }
            for (db_node, dir) in numbered_subdirs(&version_dir)? {
                locations.push(DbLocation {
                    spc_node,
                    db_node,
                    dir,
                });
            }
        }
    }
    Ok(locations)
}

/// Subdirectories (or symlinks to directories) named by a decimal OID.
fn numbered_subdirs(dir: &Path) -> Result<Vec<(u32, PathBuf)>, ImportError> {
    let mut out = Vec::new();
    for (name, path) in list_dir(dir)? {
        if let Some(oid) = name.parse::<u32>().ok().filter(|_| path.is_dir()) {
            out.push((oid, path));
        }
    }
    out.sort();
    Ok(out)
}

/// (file name, path) of every entry of `dir`, sorted by name.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, ImportError> {
    let io = |source| ImportError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_owned(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Relation files of one database grouped by fork: segment number → path.
type ForkFiles = BTreeMap<(u32, ForkNumber), BTreeMap<u32, PathBuf>>;

fn import_relations(
    writer: &mut TimelineWriter<'_>,
    lsn: Lsn,
    pgdata: &Path,
    stats: &mut ImportStats,
) -> Result<(), ImportError> {
    let locations = database_locations(pgdata)?;
    let mut per_db = Vec::new();
    let mut total_bytes = 0u64;
    for location in &locations {
        let (forks, bytes) = relation_files(location, stats)?;
        total_bytes += bytes;
        per_db.push(forks);
    }
    let progress = progress_bar(total_bytes, "importing relations");
    let mut dbs = Vec::new();
    for (location, forks) in locations.iter().zip(per_db) {
        let mut rel_dir = Vec::new();
        for (&(rel_node, fork), segments) in &forks {
            let rel = RelFileNode {
                spc_node: location.spc_node,
                db_node: location.db_node,
                rel_node,
            };
            let blocks = import_fork(writer, lsn, rel, fork, segments, &progress)?;
            stats.relation_forks += 1;
            stats.relation_pages += u64::from(blocks);
            rel_dir.push((rel_node, fork));
        }
        writer_put(
            writer,
            Key::rel_dir(location.spc_node, location.db_node),
            lsn,
            layout::encode_rel_dir(&rel_dir),
        )?;
        let map_path = location.dir.join("pg_filenode.map");
        if map_path.exists() {
            let map = read_file(&map_path)?;
            if map.len() != layout::RELMAP_FILE_SIZE {
                return Err(ImportError::BadFile {
                    path: map_path,
                    reason: format!("{} bytes, expected {}", map.len(), layout::RELMAP_FILE_SIZE),
                });
            }
            writer_put(
                writer,
                Key::relmap_file(location.spc_node, location.db_node),
                lsn,
                map,
            )?;
        }
        if location.spc_node != GLOBAL_TABLESPACE_OID {
            dbs.push((location.spc_node, location.db_node));
        }
    }
    progress.finish_and_clear();
    stats.databases = dbs.len();
    writer_put(writer, Key::db_dir(), lsn, layout::encode_db_dir(&dbs))?;
    Ok(())
}

fn writer_put(
    writer: &mut TimelineWriter<'_>,
    key: Key,
    lsn: Lsn,
    value: Vec<u8>,
) -> Result<(), ImportError> {
    Ok(writer.put(key, lsn, Value::Image(Bytes::from(value)))?)
}

/// Groups the relation files of one database directory by fork; returns
/// them with their total size.
fn relation_files(
    location: &DbLocation,
    stats: &mut ImportStats,
) -> Result<(ForkFiles, u64), ImportError> {
    let mut forks = ForkFiles::new();
    let mut bytes = 0u64;
    for (name, path) in list_dir(&location.dir)? {
        match layout::parse_rel_file_name(&name) {
            Some(file) => {
                bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                forks
                    .entry((file.rel_node, file.fork))
                    .or_default()
                    .insert(file.segno, path);
            }
            None if matches!(
                name.as_str(),
                "PG_VERSION" | "pg_filenode.map" | "pg_control" | "pg_internal.init"
            ) => {}
            None => stats.skipped.push(path.display().to_string()),
        }
    }
    Ok((forks, bytes))
}

/// Stores every page of one fork and its size; returns the size in blocks.
fn import_fork(
    writer: &mut TimelineWriter<'_>,
    lsn: Lsn,
    rel: RelFileNode,
    fork: ForkNumber,
    segments: &BTreeMap<u32, PathBuf>,
    progress: &ProgressBar,
) -> Result<u32, ImportError> {
    let mut blocks = 0u32;
    for (expected, (&segno, path)) in segments.iter().enumerate() {
        if segno as usize != expected || blocks != segno * RELSEG_SIZE_BLOCKS {
            return Err(ImportError::BadFile {
                path: path.clone(),
                reason: "relation segment follows a missing or partial segment".into(),
            });
        }
        let mut file = fs::File::open(path).map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })?;
        while let Some(page) = read_page(&mut file, path)? {
            writer_put(writer, Key::rel_block(rel, fork, blocks), lsn, page)?;
            blocks += 1;
            progress.inc(BLCKSZ as u64);
        }
    }
    writer.put(Key::rel_size(rel, fork), lsn, Value::rel_size(blocks))?;
    Ok(blocks)
}

/// Reads the next whole page, `None` at end of file; a partial page is an
/// error (PostgreSQL only ever extends files by whole pages).
fn read_page(file: &mut fs::File, path: &Path) -> Result<Option<Vec<u8>>, ImportError> {
    let mut page = vec![0u8; BLCKSZ];
    let mut filled = 0;
    while filled < BLCKSZ {
        match file.read(&mut page[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ImportError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    match filled {
        0 => Ok(None),
        BLCKSZ => Ok(Some(page)),
        n => Err(ImportError::BadFile {
            path: path.to_owned(),
            reason: format!("ends with a partial page of {n} bytes"),
        }),
    }
}

fn import_slru(
    writer: &mut TimelineWriter<'_>,
    lsn: Lsn,
    pgdata: &Path,
    kind: SlruKind,
    stats: &mut ImportStats,
) -> Result<(), ImportError> {
    let dir = pgdata.join(kind.dir());
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = list_dir(&dir)?;
    let Some(storage_kind) = layout::storage_slru(kind) else {
        // No key kind for commit timestamps yet: a fresh cluster has none,
        // and PostgreSQL recreates the log when the GUC is switched on.
        stats
            .skipped
            .extend(entries.iter().map(|(_, p)| p.display().to_string()));
        return Ok(());
    };
    let mut segments = Vec::new();
    for (name, path) in entries {
        let Some(segno) = slru::parse_segment_file_name(&name) else {
            stats.skipped.push(path.display().to_string());
            continue;
        };
        let data = read_file(&path)?;
        if !data.len().is_multiple_of(BLCKSZ) || data.len() > slru::SLRU_SEGMENT_SIZE_BYTES {
            return Err(ImportError::BadFile {
                path,
                reason: format!("SLRU segment of {} bytes", data.len()),
            });
        }
        let pages = (data.len() / BLCKSZ) as u32;
        for (blkno, page) in data.chunks_exact(BLCKSZ).enumerate() {
            let key = Key::slru_block(storage_kind, segno, blkno as u32);
            writer_put(writer, key, lsn, page.to_vec())?;
        }
        let size_key = Key::slru_segment_size(storage_kind, segno);
        writer.put(size_key, lsn, Value::rel_size(pages))?;
        stats.slru_pages += u64::from(pages);
        segments.push(segno);
    }
    let dir_value = layout::encode_u32_list(&segments);
    writer_put(writer, Key::slru_dir(storage_kind), lsn, dir_value)
}

fn import_twophase(
    writer: &mut TimelineWriter<'_>,
    lsn: Lsn,
    pgdata: &Path,
) -> Result<(), ImportError> {
    let dir = pgdata.join("pg_twophase");
    let mut xids = Vec::new();
    if dir.is_dir() {
        for (name, path) in list_dir(&dir)? {
            let xid = (name.len() == 8)
                .then(|| u32::from_str_radix(&name, 16).ok())
                .flatten();
            if let Some(xid) = xid {
                writer_put(writer, Key::twophase_file(xid), lsn, read_file(&path)?)?;
                xids.push(xid);
            }
        }
    }
    writer_put(
        writer,
        Key::twophase_dir(),
        lsn,
        layout::encode_u32_list(&xids),
    )
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a
/// terminal, so logs and tests stay quiet.
pub(crate) fn progress_bar(total_bytes: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total_bytes).with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} ({eta})")
    {
        bar.set_style(style);
    }
    bar
}
