//! [`WalIngest`]: one record in, one batch of versioned values out.

use postgres_wal::control::{CheckPoint, ControlFile};
use postgres_wal::record::DecodedRecord;
use postgres_wal::rmgr::clog::{self, ClogRecord};
use postgres_wal::rmgr::multixact::{self, MultiXactRecord};
use postgres_wal::rmgr::xact::{self, XactRecord};
use postgres_wal::rmgr::xlog::{self, XlogRecord};
use postgres_wal::rmgr::RmgrId;
use postgres_wal::rmgr::{dbase, relmap, smgr, tblspc};
use postgres_wal::{Lsn, RawRecord};
use storage::{Key, SlruKind, Timeline, Value};

use crate::batch::{Batch, Pending};
use crate::checkpoint::CheckpointState;
use crate::known::Known;
use crate::prepare::{decode_in_place, decode_only, derive, PreparedRecord};
use crate::value_slab::ValueSlab;
use crate::{blocks, catalog, slru, IngestError};

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Records whose values were stored.
    pub records_ingested: u64,
    /// Records skipped because the timeline already had them.
    pub records_skipped: u64,
    /// Block images stored as page images.
    pub images_stored: u64,
    /// Blocks stored as WAL records for native redo.
    pub native_records_stored: u64,
    /// Native redo disagreeing with a consistency-check image (counted only
    /// with [`WalIngest::set_check_native`]; the image is stored either way).
    pub image_mismatches: u64,
    /// Blocks whose native redo was compared with an after-image.
    pub native_checks: u64,
}

/// The newest commit ingest has seen: where it ended and when it happened.
/// Commit timestamps are not stored (`pg_commit_ts` is not served); sampling this
/// after each batch of WAL gives a pageserver the LSN↔time map that
/// time-based retention (`pitr_interval`) needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPoint {
    /// End LSN of the commit (or commit-prepared) record.
    pub lsn: Lsn,
    /// Commit time, microseconds since the Unix epoch.
    pub unix_micros: i64,
}

/// Commits [`WalIngest::take_commits`] keeps when nobody takes them (a
/// caller that only reads [`WalIngest::last_commit`]); the older half is
/// dropped beyond this.
const MAX_PENDING_COMMITS: usize = 65_536;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Per-timeline ingest state: the checkpoint counters and caches of sizes
/// and directory values, loaded from the store on first use.
pub struct WalIngest {
    checkpoint: Option<CheckpointState>,
    known: Known,
    stats: IngestStats,
    check_native: bool,
    last_commit: Option<CommitPoint>,
    /// Commits ingested since [`WalIngest::take_commits`] last ran.
    commits: Vec<CommitPoint>,
    /// Records buffered by [`WalIngest::buffer_record`], not yet written.
    pending: Pending,
    /// The last record ingested, whose buffers the next one is decoded
    /// into (no allocation per record for its block list and data).
    pub(crate) spare: Option<PreparedRecord>,
    /// Where the stored records and checkpoint values are allocated.
    slab: ValueSlab,
}

impl std::fmt::Debug for WalIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalIngest")
            .field("checkpoint", &self.checkpoint.as_ref().map(|c| &c.value))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WalIngest {
    /// Loads what it needs (checkpoint value etc.) as of
    /// `timeline.last_record_lsn()`.
    pub fn new(timeline: &Timeline) -> Result<WalIngest, IngestError> {
        let checkpoint = load_checkpoint(timeline, timeline.last_record_lsn())?;
        Ok(WalIngest {
            checkpoint: Some(CheckpointState::new(checkpoint)),
            known: Known::default(),
            stats: IngestStats::default(),
            check_native: false,
            last_commit: None,
            commits: Vec::new(),
            pending: Pending::default(),
            spare: None,
            slab: ValueSlab::default(),
        })
    }

    /// When on, every block of a natively redone manager that carries a
    /// consistency-check after-image (an endpoint running with
    /// `wal_consistency_checking` covering it) is also redone natively on
    /// its stored previous version and compared, masked, with the image;
    /// disagreements count in [`IngestStats::image_mismatches`]. The image
    /// is what gets stored either way. Costs one page read per such block.
    pub fn set_check_native(&mut self, on: bool) {
        self.check_native = on;
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// The newest commit ingested since this value was created.
    pub fn last_commit(&self) -> Option<CommitPoint> {
        self.last_commit
    }

    /// Every commit ingested since the previous call, oldest first: for a
    /// caller that samples commit times once per batch of WAL rather than
    /// after every record. At most the newest 65,536 are kept when
    /// nobody takes them.
    pub fn take_commits(&mut self) -> std::vec::Drain<'_, CommitPoint> {
        self.commits.drain(..)
    }

    /// The checkpoint state as ingest currently sees it (next xid, oid, ...).
    pub fn checkpoint(&self) -> Option<&CheckPoint> {
        self.checkpoint.as_ref().map(|c| &c.value)
    }

    /// Derives every value the record implies and writes them at
    /// `raw.end_lsn`; `last_record_lsn` advances to `raw.end_lsn` before
    /// this returns. [`WalIngest::buffer_record`] and
    /// [`WalIngest::write_buffered`] do the same for many records at the
    /// cost of one write. Records ending at or below `last_record_lsn` are
    /// skipped (Ok), so re-feeding after a restart is harmless.
    ///
    /// On error nothing of the record is stored (records buffered before it
    /// are) and the caches are dropped (they reload from the store on the
    /// next record).
    pub fn ingest_record(
        &mut self,
        timeline: &Timeline,
        raw: &RawRecord<'_>,
    ) -> Result<(), IngestError> {
        self.buffer_record(timeline, raw)?;
        self.write_buffered(timeline)
    }

    /// Like [`WalIngest::ingest_record`], except that the record's values
    /// may stay buffered until [`WalIngest::write_buffered`] (or until
    /// enough are buffered, or ingest needs to read the store). Each record's
    /// values still sit at its own end LSN, so every record boundary stays
    /// a consistent point to read at once written.
    pub fn buffer_record(
        &mut self,
        timeline: &Timeline,
        raw: &RawRecord<'_>,
    ) -> Result<(), IngestError> {
        let mut prepared = self.decode_spare(raw);
        let buffered = self.buffer_prepared_in_place(timeline, &mut prepared);
        self.spare = Some(prepared);
        buffered
    }

    /// `raw` decoded into the buffers of the previous record.
    pub(crate) fn decode_spare(&mut self, raw: &RawRecord<'_>) -> PreparedRecord {
        match self.spare.take() {
            Some(mut spare) => {
                decode_in_place(raw, &mut spare);
                spare
            }
            None => decode_only(raw),
        }
    }

    /// [`WalIngest::buffer_record`] for a decoded record, leaving what the
    /// record's values do not keep (the decoded record's buffers) in
    /// `prepared`, to decode the next record into (by the thread that
    /// allocated them, see [`crate::pipelined`]). Records must come in WAL
    /// order.
    pub(crate) fn buffer_prepared_in_place(
        &mut self,
        timeline: &Timeline,
        prepared: &mut PreparedRecord,
    ) -> Result<(), IngestError> {
        let last_record_lsn = self
            .pending
            .end()
            .unwrap_or_else(|| timeline.last_record_lsn());
        if prepared.end_lsn <= last_record_lsn {
            self.stats.records_skipped += 1;
            return Ok(());
        }
        let mut stats = self.stats;
        match self.ingest_new(timeline, prepared, &mut stats) {
            Ok(()) => {
                stats.records_ingested += 1;
                self.stats = stats;
                if self.pending.is_full() {
                    self.write_buffered(timeline)?;
                }
                Ok(())
            }
            Err(error) => {
                self.pending.abandon_record();
                self.known = Known::default();
                self.checkpoint = None;
                // The records before this one are whole: keep them.
                self.write_buffered(timeline)?;
                Err(error)
            }
        }
    }

    /// Writes every buffered record as one batch: afterwards
    /// `timeline.last_record_lsn()` is the newest one's end.
    pub fn write_buffered(&mut self, timeline: &Timeline) -> Result<(), IngestError> {
        self.pending.write(timeline)
    }

    fn ingest_new(
        &mut self,
        timeline: &Timeline,
        prepared: &mut PreparedRecord,
        stats: &mut crate::IngestStats,
    ) -> Result<(), IngestError> {
        let (start_lsn, end_lsn) = (prepared.start_lsn, prepared.end_lsn);
        let decoded = match &mut prepared.decoded {
            Ok(decoded) => decoded,
            // Reported once: the record is dropped after this.
            Err(error) => {
                return Err(std::mem::replace(
                    error,
                    IngestError::Malformed {
                        lsn: start_lsn,
                        reason: "reported already".to_owned(),
                    },
                ))
            }
        };
        derive(decoded, &mut self.slab);
        let mut checkpoint = match self.checkpoint.take() {
            Some(state) => state,
            None => {
                self.pending.write(timeline)?;
                let lsn = timeline.last_record_lsn();
                CheckpointState::new(load_checkpoint(timeline, lsn)?)
            }
        };
        let mut b = Batch::new(timeline, &mut self.pending, start_lsn, end_lsn);
        let known = &mut self.known;
        blocks::ingest_blocks(known, &mut b, decoded, stats, self.check_native)?;
        let record = &decoded.record;
        blocks::ingest_vm_clears(known, &mut b, &decoded.vm_clears)?;
        let commit_time = ingest_body(known, &mut checkpoint, &mut b, record)?;
        checkpoint.advance_xid(record.xid);
        if let Some(top) = record.toplevel_xid {
            checkpoint.advance_xid(top);
        }
        known.flush(&mut b)?;
        if checkpoint.dirty {
            let bytes = self.slab.copy(&checkpoint.value.serialize());
            b.put(Key::checkpoint(), Value::Image(bytes))?;
        }
        self.pending.finish_record(end_lsn, timeline);
        if let Some(micros) = commit_time {
            let commit = CommitPoint {
                lsn: end_lsn,
                unix_micros: micros.saturating_add(POSTGRES_EPOCH_UNIX_MICROS),
            };
            self.last_commit = Some(commit);
            if self.commits.len() >= MAX_PENDING_COMMITS {
                self.commits.drain(..MAX_PENDING_COMMITS / 2);
            }
            self.commits.push(commit);
        }
        checkpoint.dirty = false;
        self.checkpoint = Some(checkpoint);
        Ok(())
    }
}

/// What the record's body (not its blocks) changes. Returns the commit
/// time (PostgreSQL epoch) of a commit record.
fn ingest_body(
    known: &mut Known,
    checkpoint: &mut CheckpointState,
    b: &mut Batch<'_>,
    record: &DecodedRecord,
) -> Result<Option<i64>, IngestError> {
    let malformed = |e: postgres_wal::rmgr::cursor::BodyError| b.malformed(e.to_string());
    // Only the bodies that change stored state are parsed: a manager
    // whose records we ignore can never fail ingest.
    match RmgrId::from_u8(record.rmid) {
        Some(RmgrId::Xlog) => ingest_xlog(checkpoint, &xlog::parse(record).map_err(malformed)?),
        Some(RmgrId::Transaction) => {
            let x = xact::parse(record).map_err(malformed)?;
            crate::xact::ingest(known, checkpoint, b, record, &x)?;
            if let XactRecord::Commit(f) | XactRecord::CommitPrepared(f) = &x {
                return Ok(Some(f.xact_time));
            }
        }
        Some(RmgrId::Storage) => {
            let s = smgr::parse(record).map_err(malformed)?;
            catalog::smgr(known, b, &s)?;
        }
        Some(RmgrId::Database) => {
            let d = dbase::parse(record).map_err(malformed)?;
            catalog::dbase(known, b, &d)?;
        }
        Some(RmgrId::Tablespace) => {
            let t = tblspc::parse(record).map_err(malformed)?;
            catalog::tablespace(known, b, &t)?;
        }
        Some(RmgrId::RelMap) => {
            let r = relmap::parse(record).map_err(malformed)?;
            catalog::relmap(b, &r)?;
        }
        Some(RmgrId::Clog) => {
            let c = clog::parse(record).map_err(malformed)?;
            ingest_clog(known, b, &c)?;
        }
        Some(RmgrId::MultiXact) => {
            let m = multixact::parse(record).map_err(malformed)?;
            ingest_multixact(known, checkpoint, b, &m)?;
        }
        // Page changes of the access methods come through block
        // references (handled already); hot standby information, logical
        // messages and replication origins change no file we serve;
        // commit timestamps are not stored (see `crate::slru`).
        Some(_) => {}
        None => {
            return Err(b.unsupported(format!(
                "custom resource manager {} is not known",
                record.rmid
            )))
        }
    }
    Ok(None)
}

fn ingest_xlog(checkpoint: &mut CheckpointState, body: &XlogRecord) {
    match body {
        XlogRecord::CheckpointShutdown(c) => checkpoint.apply_checkpoint_record(c, true),
        XlogRecord::CheckpointOnline(c) => checkpoint.apply_checkpoint_record(c, false),
        XlogRecord::NextOid(oid) => checkpoint.set_next_oid(*oid),
        XlogRecord::EndOfRecovery {
            this_timeline,
            prev_timeline,
            ..
        } => checkpoint.set_timeline(*this_timeline, *prev_timeline),
        // FPIs are blocks (handled); the rest (switch, noop, parameter and
        // full-page-write changes, restore points, backup end) change no
        // stored file. Parameter changes matter to hot standby only, and a
        // base backup starts as a primary.
        _ => {}
    }
}

fn ingest_clog(known: &mut Known, b: &mut Batch<'_>, body: &ClogRecord) -> Result<(), IngestError> {
    match body {
        ClogRecord::ZeroPage { pageno } => {
            slru::zero_page_record(known, b, SlruKind::Clog, *pageno)
        }
        ClogRecord::Truncate { pageno, .. } => {
            let cutoff = u32::try_from(*pageno).map_err(|_| b.malformed("negative CLOG page"))?;
            slru::truncate(known, b, SlruKind::Clog, cutoff)
        }
        _ => Ok(()),
    }
}

fn ingest_multixact(
    known: &mut Known,
    checkpoint: &mut CheckpointState,
    b: &mut Batch<'_>,
    body: &MultiXactRecord,
) -> Result<(), IngestError> {
    match body {
        MultiXactRecord::ZeroOffsetPage { pageno } => {
            slru::zero_page_record(known, b, SlruKind::MultiXactOffsets, *pageno)
        }
        MultiXactRecord::ZeroMemberPage { pageno } => {
            slru::zero_page_record(known, b, SlruKind::MultiXactMembers, *pageno)
        }
        MultiXactRecord::Create {
            mid,
            offset,
            members,
        } => {
            slru::create_multixact(known, b, *mid, *offset, members)?;
            let count = u32::try_from(members.len()).map_err(|_| b.malformed("member count"))?;
            checkpoint.advance_multi(*mid, *offset, count);
            members.iter().for_each(|m| checkpoint.advance_xid(m.xid));
            Ok(())
        }
        MultiXactRecord::Truncate {
            oldest_multi_db,
            end_trunc_off,
            end_trunc_memb,
            ..
        } => {
            let offsets_page = postgres_wal::slru::multixact_offset_position(*end_trunc_off).page;
            let members_page = postgres_wal::slru::multixact_member_position(*end_trunc_memb).0;
            slru::truncate(known, b, SlruKind::MultiXactOffsets, offsets_page)?;
            slru::truncate(known, b, SlruKind::MultiXactMembers, members_page)?;
            checkpoint.set_oldest_multi(*end_trunc_off, *oldest_multi_db);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The checkpoint value at `lsn`, or the copy in `pg_control` if the
/// timeline has none yet.
fn load_checkpoint(timeline: &Timeline, lsn: Lsn) -> Result<CheckPoint, IngestError> {
    let read = |key: Key| match timeline.get(key, lsn) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(storage::GetError::KeyNotFound { .. }) => Ok(None),
        Err(e) => Err(IngestError::Read(e)),
    };
    if let Some(bytes) = read(Key::checkpoint())? {
        return CheckPoint::parse(&bytes).map_err(|e| IngestError::BadStoredValue {
            key: Key::checkpoint(),
            lsn,
            reason: e.to_string(),
        });
    }
    let control = read(Key::control_file())?.ok_or(IngestError::NotBootstrapped { lsn })?;
    ControlFile::parse(&control)
        .map(|c| c.checkpoint_copy)
        .map_err(|e| IngestError::BadStoredValue {
            key: Key::control_file(),
            lsn,
            reason: e.to_string(),
        })
}
