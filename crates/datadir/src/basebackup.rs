//! Base backup: a tar of a complete PostgreSQL 15 data directory at any
//! record-boundary LSN of a timeline, from which a stock postmaster starts
//! without WAL replay.
//!
//! The archive holds every relation fork as of the LSN (sizes from the
//! store; blocks the store lacks inside a fork are zero pages, which is what
//! PostgreSQL's relation extension writes), the SLRU segments, relmapper and
//! two-phase files, `PG_VERSION` files, minimal configuration, the empty
//! directories PostgreSQL expects, and a WAL segment holding a shutdown
//! checkpoint synthesised right after the LSN with `pg_control` pointing at
//! it (see [`postgres_wal::synth`]). Unlogged relations start empty: their
//! init fork is copied to the main fork and their other forks are dropped,
//! exactly what PostgreSQL does after a crash. Transactions that were in
//! flight at the LSN have no commit record, so they read as aborted.
//!
//! Work is split in two so a network server can refuse early: [`Basebackup::prepare`]
//! checks the LSN and plans every file (reading only small keys), then
//! [`Basebackup::write_tar`] streams the archive page by page.

use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use postgres_wal::control::{CheckPoint, ControlFile, DbState};
use postgres_wal::lsn::DEFAULT_WAL_SEGMENT_SIZE;
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::slru;
use postgres_wal::synth::{self, SynthesizedCheckpoint};
use postgres_wal::Lsn;
use storage::{GetError, Key, SlruKind, Timeline, Value};

use crate::error::BasebackupError;
use crate::layout::{self, GLOBAL_TABLESPACE_OID, RELSEG_SIZE_BLOCKS};
use crate::manifest::ManifestBuilder;

/// Directories a PostgreSQL 15 data directory must contain, in tar order.
pub const EXPECTED_DIRECTORIES: &[&str] = &[
    "base",
    "global",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_logical",
    "pg_logical/mappings",
    "pg_logical/snapshots",
    "pg_multixact",
    "pg_multixact/members",
    "pg_multixact/offsets",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_twophase",
    "pg_wal",
    "pg_wal/archive_status",
    "pg_xact",
];

/// `pg_hba.conf` of a base backup: no `trust`. On the Unix socket an OS
/// user gets in as the role of its own name (`peer`); over TCP every client
/// needs a password (`scram-sha-256`), replication included. Whoever starts
/// the data directory sets the passwords (sediment's endpoints generate
/// them and write their own `pg_hba.conf`).
pub const PG_HBA_CONF: &str = "\
# Written by Sediment's base backup: peer on the Unix socket, passwords
# (scram-sha-256) over TCP; no trust.
local   all             all                                     peer
local   replication     all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
";

/// `postgresql.conf` of a base backup: defaults only; whoever starts the
/// endpoint passes its settings (port, WAL streaming) itself.
pub const POSTGRESQL_CONF: &str =
    "# Written by Sediment's base backup; settings come from the endpoint.\n";

/// Contents of every `PG_VERSION` file.
pub const PG_VERSION_FILE: &str = "15\n";

/// Where a planned file's bytes come from.
#[derive(Clone, Debug)]
enum Source {
    /// Small files built in memory.
    Bytes(Bytes),
    /// `blocks` blocks of a fork from `first_blkno`, read at the LSN.
    Relation {
        rel: RelFileNode,
        fork: ForkNumber,
        first_blkno: u32,
        blocks: u32,
    },
    /// An SLRU segment: `stored` pages from the store, zero pages after.
    Slru {
        kind: SlruKind,
        segno: u32,
        stored: u32,
        pages: u32,
    },
}

/// A relation segment file of a lazy data directory: `blocks` pages of
/// `fork` of `rel` from `first_blkno`, stored under `path` (relative to the
/// data directory). An unlogged relation's main fork is planned from its
/// init fork, so `fork` may differ from the fork the file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LazySegment {
    pub path: String,
    pub rel: RelFileNode,
    pub fork: ForkNumber,
    pub first_blkno: u32,
    pub blocks: u32,
}

#[derive(Clone, Debug)]
struct PlannedFile {
    path: String,
    size_bytes: u64,
    source: Source,
}

/// A base backup checked and planned at one LSN, ready to be written.
pub struct Basebackup<'a> {
    timeline: &'a Timeline,
    lsn: Lsn,
    files: Vec<PlannedFile>,
    directories: Vec<String>,
    synthesized: SynthesizedCheckpoint,
    system_identifier: u64,
    mtime: u64,
}

impl std::fmt::Debug for Basebackup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basebackup")
            .field("lsn", &self.lsn)
            .field("checkpoint_lsn", &self.synthesized.record_lsn)
            .field("files", &self.files.len())
            .finish()
    }
}

impl<'a> Basebackup<'a> {
    /// Checks that `lsn` (default: the timeline's last record) is readable
    /// and plans the archive. Nothing is written yet, so errors here can be
    /// reported cleanly to a client.
    pub fn prepare(timeline: &'a Timeline, lsn: Option<Lsn>) -> Result<Self, BasebackupError> {
        let lsn = lsn.unwrap_or_else(|| timeline.last_record_lsn());
        let reader = StoreReader { timeline, lsn };
        let control_bytes = match timeline.get(Key::control_file(), lsn) {
            Ok(bytes) => bytes,
            Err(GetError::KeyNotFound { .. }) => {
                return Err(BasebackupError::Missing {
                    what: "pg_control",
                    lsn,
                })
            }
            Err(
                source @ (GetError::LsnAhead { .. }
                | GetError::BelowGcCutoff { .. }
                | GetError::ShuttingDown),
            ) => return Err(BasebackupError::LsnNotAvailable { lsn, source }),
            Err(source) => {
                return Err(BasebackupError::Read {
                    key: Key::control_file(),
                    lsn,
                    source,
                })
            }
        };
        let stored_control = ControlFile::parse(&control_bytes)?;
        let checkpoint = match reader.get_optional(Key::checkpoint())? {
            Some(bytes) => CheckPoint::parse(&bytes)?,
            None => stored_control.checkpoint_copy.clone(),
        };
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let segment_size = match u64::from(stored_control.xlog_seg_size) {
            0 => DEFAULT_WAL_SEGMENT_SIZE,
            size => size,
        };
        let checkpoint = shutdown_checkpoint(checkpoint, mtime);
        let synthesized = synth::shutdown_checkpoint_segment(
            lsn,
            &checkpoint,
            stored_control.system_identifier,
            segment_size,
        )?;
        let mut plan = Planner {
            reader,
            files: Vec::new(),
            directories: EXPECTED_DIRECTORIES.iter().map(|d| d.to_string()).collect(),
        };
        plan.relations()?;
        plan.slrus(&synthesized.checkpoint)?;
        plan.twophase()?;
        plan.small_files(&stored_control, &synthesized, mtime);
        Ok(Basebackup {
            timeline,
            lsn,
            files: plan.files,
            directories: plan.directories,
            system_identifier: stored_control.system_identifier,
            synthesized,
            mtime,
        })
    }

    /// The LSN the data directory reflects.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Where the synthesised shutdown checkpoint record starts.
    pub fn checkpoint_lsn(&self) -> Lsn {
        self.synthesized.record_lsn
    }

    /// The end of the checkpoint record: where the started server's WAL begins.
    pub fn end_lsn(&self) -> Lsn {
        self.synthesized.end_lsn
    }

    /// The cluster's system identifier (from the stored `pg_control`).
    pub fn system_identifier(&self) -> u64 {
        self.system_identifier
    }

    /// PostgreSQL timeline id of the synthesised WAL.
    pub fn pg_timeline_id(&self) -> u32 {
        self.synthesized.checkpoint.this_timeline_id
    }

    /// Total size of the files in the archive (without tar headers).
    pub fn total_size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }

    /// Paths of the files in the archive, in order.
    pub fn file_paths(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.path.as_str())
    }

    /// Streams the tar archive (terminated with the two zero blocks) to `out`.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<(), BasebackupError> {
        self.write_archive(out, None, true)
    }

    /// A *lazy* data directory: the archive without relation segment files
    /// (everything else — control file, synthesised checkpoint WAL, SLRUs,
    /// relmapper files, configuration — as in [`Basebackup::write_tar`]).
    /// The caller creates each of [`Basebackup::lazy_segments`] as a sparse
    /// file of its size and fills pages on demand. Cost: small keys only.
    pub fn write_lazy_tar<W: Write>(&self, out: W) -> Result<(), BasebackupError> {
        self.write_archive(out, None, false)
    }

    /// The relation segment files the lazy archive leaves out: path, where
    /// the pages come from and how many there are.
    pub fn lazy_segments(&self) -> Vec<LazySegment> {
        self.files
            .iter()
            .filter_map(|file| match file.source {
                Source::Relation {
                    rel,
                    fork,
                    first_blkno,
                    blocks,
                } => Some(LazySegment {
                    path: file.path.clone(),
                    rel,
                    fork,
                    first_blkno,
                    blocks,
                }),
                _ => None,
            })
            .collect()
    }

    /// Streams the archive like [`Basebackup::write_tar`] and returns the
    /// `backup_manifest` describing it (see [`crate::manifest`]).
    pub fn write_tar_with_manifest<W: Write>(&self, out: W) -> Result<Vec<u8>, BasebackupError> {
        let mut manifest = ManifestBuilder::default();
        self.write_archive(out, Some(&mut manifest), true)?;
        Ok(manifest.finish(
            self.pg_timeline_id(),
            self.synthesized.record_lsn,
            self.synthesized.end_lsn,
        ))
    }

    fn write_archive<W: Write>(
        &self,
        out: W,
        mut manifest: Option<&mut ManifestBuilder>,
        with_relations: bool,
    ) -> Result<(), BasebackupError> {
        let mut builder = tar::Builder::new(out);
        for dir in &self.directories {
            let mut header = self.header(tar::EntryType::Directory, 0o700, 0);
            builder
                .append_data(&mut header, format!("{dir}/"), std::io::empty())
                .map_err(BasebackupError::Write)?;
        }
        for file in &self.files {
            if !with_relations && matches!(file.source, Source::Relation { .. }) {
                continue;
            }
            let crc = self.append_file(&mut builder, file)?;
            if let Some(manifest) = manifest.as_deref_mut() {
                manifest.add_file(&file.path, file.size_bytes, self.mtime, crc);
            }
        }
        builder
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(BasebackupError::Write)
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    /// Appends one file; returns the CRC-32C of its contents.
    fn append_file<W: Write>(
        &self,
        builder: &mut tar::Builder<W>,
        file: &PlannedFile,
    ) -> Result<u32, BasebackupError> {
        let mut header = self.header(tar::EntryType::Regular, 0o600, file.size_bytes);
        if let Source::Bytes(bytes) = &file.source {
            builder
                .append_data(&mut header, &file.path, &bytes[..])
                .map_err(BasebackupError::Write)?;
            return Ok(crc32c::crc32c(bytes));
        }
        let mut reader = PageReader {
            store: StoreReader {
                timeline: self.timeline,
                lsn: self.lsn,
            },
            source: &file.source,
            next: 0,
            page: Vec::new(),
            offset: 0,
            crc: 0,
            failure: None,
        };
        match builder.append_data(&mut header, &file.path, &mut reader) {
            Ok(()) => Ok(reader.crc),
            Err(e) => Err(reader.failure.take().unwrap_or(BasebackupError::Write(e))),
        }
    }
}

/// The checkpoint to write: a clean shutdown with nothing in flight.
fn shutdown_checkpoint(mut checkpoint: CheckPoint, now: u64) -> CheckPoint {
    checkpoint.prev_timeline_id = checkpoint.this_timeline_id;
    checkpoint.oldest_active_xid = 0;
    checkpoint.time = now as i64;
    checkpoint
}

/// Reads at one LSN, mapping storage errors to ours.
#[derive(Clone, Copy)]
struct StoreReader<'a> {
    timeline: &'a Timeline,
    lsn: Lsn,
}

impl StoreReader<'_> {
    fn get_optional(&self, key: Key) -> Result<Option<Bytes>, BasebackupError> {
        match self.timeline.get(key, self.lsn) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(GetError::KeyNotFound { .. }) => Ok(None),
            Err(GetError::ShuttingDown | GetError::Cancelled) => Err(BasebackupError::Cancelled),
            Err(source) => Err(BasebackupError::Read {
                key,
                lsn: self.lsn,
                source,
            }),
        }
    }

    fn size(&self, key: Key, what: &str) -> Result<Option<u32>, BasebackupError> {
        match self.get_optional(key)? {
            None => Ok(None),
            Some(bytes) => {
                Value::decode_rel_size(&bytes)
                    .map(Some)
                    .ok_or_else(|| BasebackupError::BadValue {
                        what: what.to_owned(),
                        lsn: self.lsn,
                        reason: format!("size of {} bytes, expected 4", bytes.len()),
                    })
            }
        }
    }

    /// A page-sized value, or a zero page when the key has none.
    fn page(&self, key: Key) -> Result<Vec<u8>, BasebackupError> {
        match self.get_optional(key)? {
            None => Ok(vec![0u8; BLCKSZ]),
            Some(bytes) if bytes.len() == BLCKSZ => Ok(bytes.to_vec()),
            Some(bytes) => Err(BasebackupError::BadValue {
                what: format!("page {key}"),
                lsn: self.lsn,
                reason: format!("{} bytes, expected {BLCKSZ}", bytes.len()),
            }),
        }
    }
}

/// Builds the file list of the archive.
struct Planner<'a> {
    reader: StoreReader<'a>,
    files: Vec<PlannedFile>,
    directories: Vec<String>,
}

impl Planner<'_> {
    fn bad(&self, what: &str, reason: &str) -> BasebackupError {
        BasebackupError::BadValue {
            what: what.to_owned(),
            lsn: self.reader.lsn,
            reason: reason.to_owned(),
        }
    }

    fn add(&mut self, path: String, bytes: impl Into<Bytes>) {
        let bytes = bytes.into();
        self.files.push(PlannedFile {
            path,
            size_bytes: bytes.len() as u64,
            source: Source::Bytes(bytes),
        });
    }

    fn relations(&mut self) -> Result<(), BasebackupError> {
        let db_dir = self
            .reader
            .get_optional(Key::db_dir())?
            .ok_or(BasebackupError::Missing {
                what: "database list",
                lsn: self.reader.lsn,
            })?;
        let dbs = layout::decode_db_dir(&db_dir)
            .ok_or_else(|| self.bad("database list", "bad length"))?;
        self.database(GLOBAL_TABLESPACE_OID, 0)?;
        for (spc, db) in dbs {
            self.database(spc, db)?;
        }
        Ok(())
    }

    fn database(&mut self, spc_node: u32, db_node: u32) -> Result<(), BasebackupError> {
        let dir = layout::db_path(spc_node, db_node);
        if spc_node != GLOBAL_TABLESPACE_OID {
            self.add_db_directories(spc_node, &dir);
            self.add(format!("{dir}/PG_VERSION"), PG_VERSION_FILE);
        }
        let what = format!("relation list of {dir}");
        let rels = match self.reader.get_optional(Key::rel_dir(spc_node, db_node))? {
            Some(bytes) => {
                layout::decode_rel_dir(&bytes).ok_or_else(|| self.bad(&what, "malformed"))?
            }
            None => Vec::new(),
        };
        let map_key = Key::relmap_file(spc_node, db_node);
        if let Some(map) = self.reader.get_optional(map_key)? {
            self.add(format!("{dir}/pg_filenode.map"), map);
        }
        let unlogged: Vec<u32> = rels
            .iter()
            .filter(|(_, fork)| *fork == ForkNumber::Init)
            .map(|(rel, _)| *rel)
            .collect();
        for (rel_node, fork) in rels {
            let rel = RelFileNode {
                spc_node,
                db_node,
                rel_node,
            };
            if unlogged.contains(&rel_node) {
                // An unlogged relation restarts from its init fork.
                match fork {
                    ForkNumber::Init => {
                        self.fork_files(&dir, rel, ForkNumber::Init, ForkNumber::Init)?;
                        self.fork_files(&dir, rel, ForkNumber::Init, ForkNumber::Main)?;
                    }
                    ForkNumber::Main | ForkNumber::Fsm | ForkNumber::VisibilityMap => {}
                }
            } else {
                self.fork_files(&dir, rel, fork, fork)?;
            }
        }
        Ok(())
    }

    fn add_db_directories(&mut self, spc_node: u32, dir: &str) {
        if spc_node != layout::DEFAULT_TABLESPACE_OID {
            // Tablespaces come back as plain directories under pg_tblspc.
            let spc_dir = format!("pg_tblspc/{spc_node}");
            let version_dir = format!("{spc_dir}/{}", layout::TABLESPACE_VERSION_DIRECTORY);
            for d in [spc_dir, version_dir] {
                if !self.directories.contains(&d) {
                    self.directories.push(d);
                }
            }
        }
        self.directories.push(dir.to_owned());
    }

    /// Plans the segment files of fork `from`, written under the name of
    /// fork `as_fork`.
    fn fork_files(
        &mut self,
        dir: &str,
        rel: RelFileNode,
        from: ForkNumber,
        as_fork: ForkNumber,
    ) -> Result<(), BasebackupError> {
        let what = format!(
            "size of {dir}/{}",
            layout::rel_file_name(rel.rel_node, from, 0)
        );
        let Some(blocks) = self.reader.size(Key::rel_size(rel, from), &what)? else {
            return Ok(()); // listed but never given a size: nothing to write
        };
        let mut segno = 0;
        loop {
            let first_blkno = segno * RELSEG_SIZE_BLOCKS;
            let count = blocks.saturating_sub(first_blkno).min(RELSEG_SIZE_BLOCKS);
            // Segment 0 always exists, even empty; later ones only if used.
            if count == 0 && segno > 0 {
                break;
            }
            self.files.push(PlannedFile {
                path: format!(
                    "{dir}/{}",
                    layout::rel_file_name(rel.rel_node, as_fork, segno)
                ),
                size_bytes: u64::from(count) * BLCKSZ as u64,
                source: Source::Relation {
                    rel,
                    fork: from,
                    first_blkno,
                    blocks: count,
                },
            });
            if count < RELSEG_SIZE_BLOCKS {
                break;
            }
            segno += 1;
        }
        Ok(())
    }

    fn slrus(&mut self, checkpoint: &CheckPoint) -> Result<(), BasebackupError> {
        // The pages PostgreSQL reads at startup to find where to continue.
        let clog = slru::clog_position(checkpoint.next_xid32()).0.page;
        let offsets = slru::multixact_offset_position(checkpoint.next_multi).page;
        let members = slru::multixact_member_position(checkpoint.next_multi_offset).0;
        self.slru(SlruKind::Clog, clog)?;
        self.slru(SlruKind::MultiXactOffsets, offsets)?;
        self.slru(SlruKind::MultiXactMembers, members)
    }

    /// Plans one SLRU's segments, making sure `required_page` exists.
    fn slru(&mut self, kind: SlruKind, required_page: u32) -> Result<(), BasebackupError> {
        let what = format!("segment list of {}", kind.dir_name());
        let segments = match self.reader.get_optional(Key::slru_dir(kind))? {
            Some(bytes) => {
                layout::decode_u32_list(&bytes).ok_or_else(|| self.bad(&what, "malformed"))?
            }
            None => Vec::new(),
        };
        let required_segno = slru::segment_of_page(required_page);
        let required_pages = slru::page_in_segment(required_page) + 1;
        let mut planned = Vec::new();
        for segno in segments {
            let what = format!(
                "size of {}/{}",
                kind.dir_name(),
                slru::segment_file_name(segno)
            );
            let stored = self
                .reader
                .size(Key::slru_segment_size(kind, segno), &what)?
                .unwrap_or(0)
                .min(slru::SLRU_PAGES_PER_SEGMENT);
            planned.push((segno, stored, stored));
        }
        match planned
            .iter_mut()
            .find(|(segno, _, _)| *segno == required_segno)
        {
            Some((_, _, pages)) => *pages = (*pages).max(required_pages),
            None => planned.push((required_segno, 0, required_pages)),
        }
        for (segno, stored, pages) in planned {
            self.files.push(PlannedFile {
                path: format!("{}/{}", kind.dir_name(), slru::segment_file_name(segno)),
                size_bytes: u64::from(pages) * BLCKSZ as u64,
                source: Source::Slru {
                    kind,
                    segno,
                    stored,
                    pages,
                },
            });
        }
        Ok(())
    }

    fn twophase(&mut self) -> Result<(), BasebackupError> {
        let Some(bytes) = self.reader.get_optional(Key::twophase_dir())? else {
            return Ok(());
        };
        let xids = layout::decode_u32_list(&bytes)
            .ok_or_else(|| self.bad("two-phase list", "malformed"))?;
        for xid in xids {
            if let Some(state) = self.reader.get_optional(Key::twophase_file(xid))? {
                self.add(format!("pg_twophase/{xid:08X}"), state);
            }
        }
        Ok(())
    }

    fn small_files(&mut self, stored: &ControlFile, synthesized: &SynthesizedCheckpoint, now: u64) {
        self.add("PG_VERSION".into(), PG_VERSION_FILE);
        self.add("postgresql.conf".into(), POSTGRESQL_CONF);
        self.add("postgresql.auto.conf".into(), "");
        self.add("pg_hba.conf".into(), PG_HBA_CONF);
        self.add("pg_ident.conf".into(), "");
        self.add(
            format!("pg_wal/{}", synthesized.file_name),
            synthesized.segment.clone(),
        );
        let mut control = stored.clone();
        control.state = DbState::Shutdowned;
        control.time = now as i64;
        control.checkpoint = synthesized.record_lsn.0;
        control.checkpoint_copy = synthesized.checkpoint.clone();
        control.min_recovery_point = 0;
        control.min_recovery_point_tli = 0;
        control.backup_start_point = 0;
        control.backup_end_point = 0;
        control.backup_end_required = false;
        // Written last, like PostgreSQL's own base backup.
        self.add("global/pg_control".into(), control.serialize());
    }
}

/// Streams the pages of a relation segment or SLRU segment, checksumming
/// them; a store error is parked in `failure` (tar only carries
/// `io::Error`) and surfaced typed.
struct PageReader<'a> {
    store: StoreReader<'a>,
    source: &'a Source,
    next: u32,
    page: Vec<u8>,
    offset: usize,
    crc: u32,
    failure: Option<BasebackupError>,
}

impl PageReader<'_> {
    /// The next page, or `None` when the file is complete.
    fn next_page(&mut self) -> Result<Option<Vec<u8>>, BasebackupError> {
        let page = match *self.source {
            Source::Relation {
                rel,
                fork,
                first_blkno,
                blocks,
            } if self.next < blocks => {
                self.store
                    .page(Key::rel_block(rel, fork, first_blkno + self.next))?
            }
            Source::Slru {
                kind,
                segno,
                stored,
                pages,
            } if self.next < pages => {
                if self.next < stored {
                    self.store.page(Key::slru_block(kind, segno, self.next))?
                } else {
                    vec![0u8; BLCKSZ]
                }
            }
            _ => return Ok(None),
        };
        self.next += 1;
        Ok(Some(page))
    }
}

impl Read for PageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.offset == self.page.len() {
            match self.next_page() {
                Ok(Some(page)) => {
                    self.page = page;
                    self.offset = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => {
                    let message = e.to_string();
                    self.failure = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.page.len() - self.offset);
        let bytes = &self.page[self.offset..self.offset + n];
        buf[..n].copy_from_slice(bytes);
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.offset += n;
        Ok(n)
    }
}
