//! One test per derivation, on synthetic records fed to a real store: what
//! each record kind must leave behind, read back through the store with
//! native redo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use datadir::layout;
use postgres_wal::control::CheckPoint;
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::rmgr::xlog::{XLOG_FPI, XLOG_FPI_FOR_HINT};
use postgres_wal::rmgr::RmgrId;
use postgres_wal::slru::{clog_status, CLOG_XACTS_PER_PAGE};
use postgres_wal::testwal::{encode_record, TestBlock};
use postgres_wal::{Lsn, RawRecord};
use proptest::prelude::*;
use storage::io::StdFileIo;
use storage::{Key, Repository, RepositoryConfig, SlruKind, Timeline, TimelineId, Value};
use walingest::{IngestError, NativeRedo, WalIngest};

const DB: u32 = 5;
const SPC: u32 = 1663;
const REL: RelFileNode = RelFileNode {
    spc_node: SPC,
    db_node: DB,
    rel_node: 16384,
};

/// A timeline seeded with a checkpoint, one empty database and one CLOG
/// page, fed records one after the other.
struct Fixture {
    timeline: Arc<Timeline>,
    ingest: WalIngest,
    next: Lsn,
    /// Feed with `buffer_record` (written by `write_buffered`) rather
    /// than `ingest_record`.
    buffered: bool,
    _repo: Repository,
    _dir: tempfile::TempDir,
}

fn checkpoint() -> CheckPoint {
    CheckPoint {
        redo: 0x100,
        this_timeline_id: 1,
        prev_timeline_id: 1,
        full_page_writes: true,
        next_xid: 1000,
        next_oid: 16384,
        next_multi: 1,
        next_multi_offset: 0,
        oldest_xid: 3,
        oldest_xid_db: 1,
        oldest_multi: 1,
        oldest_multi_db: 1,
        time: 0,
        oldest_commit_ts_xid: 0,
        newest_commit_ts_xid: 0,
        oldest_active_xid: 0,
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_with(
            dir.path(),
            RepositoryConfig::default(),
            Arc::new(StdFileIo),
            Arc::new(NativeRedo),
        )
        .unwrap();
        let timeline = repo
            .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
            .unwrap();
        let seed = Lsn(0x100);
        let mut w = timeline.writer();
        let image = |b: Vec<u8>| Value::Image(Bytes::from(b));
        w.put(
            Key::checkpoint(),
            seed,
            image(checkpoint().serialize().to_vec()),
        )
        .unwrap();
        w.put(
            Key::db_dir(),
            seed,
            image(layout::encode_db_dir(&[(SPC, DB)])),
        )
        .unwrap();
        w.put(Key::rel_dir(SPC, DB), seed, image(Vec::new()))
            .unwrap();
        w.put(
            Key::slru_block(SlruKind::Clog, 0, 0),
            seed,
            image(vec![0; BLCKSZ]),
        )
        .unwrap();
        w.put(
            Key::slru_segment_size(SlruKind::Clog, 0),
            seed,
            Value::rel_size(1),
        )
        .unwrap();
        w.put(
            Key::slru_dir(SlruKind::Clog),
            seed,
            image(layout::encode_u32_list(&[0])),
        )
        .unwrap();
        w.finish(seed).unwrap();
        let ingest = WalIngest::new(&timeline).unwrap();
        Fixture {
            timeline,
            ingest,
            next: Lsn(0x1000),
            buffered: false,
            _repo: repo,
            _dir: dir,
        }
    }

    fn feed(
        &mut self,
        rmid: RmgrId,
        info: u8,
        xid: u32,
        blocks: &[TestBlock],
        main: &[u8],
    ) -> Result<Lsn, IngestError> {
        self.feed_raw(rmid as u8, info, xid, blocks, main)
    }

    fn feed_raw(
        &mut self,
        rmid: u8,
        info: u8,
        xid: u32,
        blocks: &[TestBlock],
        main: &[u8],
    ) -> Result<Lsn, IngestError> {
        let bytes = encode_record(rmid, info, xid, Lsn(0), blocks, None, None, main);
        let start = self.next;
        let end = Lsn((start.0 + bytes.len() as u64).div_ceil(8) * 8);
        let raw = RawRecord {
            start_lsn: start,
            end_lsn: end,
            bytes: &bytes,
        };
        if self.buffered {
            self.ingest.buffer_record(&self.timeline, &raw)?;
        } else {
            self.ingest.ingest_record(&self.timeline, &raw)?;
        }
        self.next = end;
        Ok(end)
    }

    fn get(&self, key: Key) -> Option<Bytes> {
        match self.timeline.get(key, self.timeline.last_record_lsn()) {
            Ok(b) => Some(b),
            Err(storage::GetError::KeyNotFound { .. }) => None,
            Err(e) => panic!("{key}: {e}"),
        }
    }

    fn size(&self, fork: ForkNumber) -> Option<u32> {
        self.timeline
            .get_rel_size(REL, fork, self.timeline.last_record_lsn())
            .unwrap()
    }

    fn rel_dir(&self) -> Vec<(u32, ForkNumber)> {
        layout::decode_rel_dir(&self.get(Key::rel_dir(SPC, DB)).unwrap()).unwrap()
    }

    fn checkpoint(&self) -> CheckPoint {
        CheckPoint::parse(&self.get(Key::checkpoint()).unwrap()).unwrap()
    }
}

/// A page PostgreSQL would consider initialised (`pd_lower`/`pd_upper` set).
fn page(fill: u8) -> Vec<u8> {
    let mut p = vec![fill; BLCKSZ];
    p[0..12].fill(0);
    p[12..14].copy_from_slice(&24u16.to_le_bytes());
    p[14..16].copy_from_slice(&(BLCKSZ as u16).to_le_bytes());
    p[16..18].copy_from_slice(&(BLCKSZ as u16).to_le_bytes());
    p[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
    p
}

fn image_block(block_id: u8, fork: ForkNumber, blkno: u32, image: Vec<u8>) -> TestBlock {
    TestBlock {
        block_id,
        rel: REL,
        fork: fork as u8,
        blkno,
        will_init: false,
        data: Vec::new(),
        image: Some((image, 0, 0)),
    }
}

/// Block `blkno` of the main fork of [`REL`] (block id 0), without an image.
fn data_block(blkno: u32, data: Vec<u8>) -> TestBlock {
    TestBlock {
        block_id: 0,
        rel: REL,
        fork: ForkNumber::Main as u8,
        blkno,
        will_init: false,
        data,
        image: None,
    }
}

fn smgr_create(fork: ForkNumber) -> Vec<u8> {
    let mut body = Vec::new();
    for v in [REL.spc_node, REL.db_node, REL.rel_node, fork as u32] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body
}

fn commit_body(subxacts: &[u32], dropped: &[RelFileNode]) -> (u8, Vec<u8>) {
    let mut body = 0i64.to_le_bytes().to_vec();
    let xinfo = 0x2 | 0x4; // HAS_SUBXACTS | HAS_RELFILENODES
    body.extend_from_slice(&(xinfo as u32).to_le_bytes());
    body.extend_from_slice(&(subxacts.len() as i32).to_le_bytes());
    subxacts
        .iter()
        .for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
    body.extend_from_slice(&(dropped.len() as i32).to_le_bytes());
    for r in dropped {
        for v in [r.spc_node, r.db_node, r.rel_node] {
            body.extend_from_slice(&v.to_le_bytes());
        }
    }
    (0x80, body) // XLOG_XACT_COMMIT | XLOG_XACT_HAS_INFO
}

#[test]
fn writing_past_the_end_extends_with_zero_pages() {
    let mut f = Fixture::new();
    f.feed(
        RmgrId::Storage,
        0x10,
        0,
        &[],
        &smgr_create(ForkNumber::Main),
    )
    .unwrap();
    assert_eq!(f.size(ForkNumber::Main), Some(0));
    assert_eq!(f.rel_dir(), vec![(REL.rel_node, ForkNumber::Main)]);
    let end = f
        .feed(
            RmgrId::Xlog,
            XLOG_FPI,
            0,
            &[image_block(0, ForkNumber::Main, 4, page(7))],
            &[],
        )
        .unwrap();
    assert_eq!(f.size(ForkNumber::Main), Some(5));
    for blkno in 0..4 {
        let p = f.get(Key::rel_block(REL, ForkNumber::Main, blkno)).unwrap();
        assert!(p.iter().all(|&b| b == 0), "gap block {blkno} is zeros");
    }
    let p = f.get(Key::rel_block(REL, ForkNumber::Main, 4)).unwrap();
    assert_eq!(&p[24..], &page(7)[24..]);
    // Redo stamps the record's end LSN on a restored image.
    assert_eq!(&p[0..4], &((end.0 >> 32) as u32).to_le_bytes());
    assert_eq!(&p[4..8], &(end.0 as u32).to_le_bytes());
    // A fork PostgreSQL creates without WAL (the FSM) appears with its first page.
    f.feed(
        RmgrId::Xlog,
        XLOG_FPI,
        0,
        &[image_block(0, ForkNumber::Fsm, 2, page(1))],
        &[],
    )
    .unwrap();
    assert_eq!(f.size(ForkNumber::Fsm), Some(3));
    assert!(f.rel_dir().contains(&(REL.rel_node, ForkNumber::Fsm)));
}

#[test]
fn truncate_shrinks_main_vm_and_fsm() {
    let mut f = Fixture::new();
    f.feed(
        RmgrId::Storage,
        0x10,
        0,
        &[],
        &smgr_create(ForkNumber::Main),
    )
    .unwrap();
    let blocks = [
        image_block(0, ForkNumber::Main, 9, page(1)),
        image_block(1, ForkNumber::Fsm, 2, page(2)),
        image_block(2, ForkNumber::VisibilityMap, 1, page(0xff)),
    ];
    f.feed(RmgrId::Xlog, XLOG_FPI, 0, &blocks, &[]).unwrap();
    assert_eq!(f.size(ForkNumber::VisibilityMap), Some(2));
    // Keep 3 heap blocks: VM page 0 keeps only their bits.
    let vm_page0 = f
        .get(Key::rel_block(REL, ForkNumber::VisibilityMap, 0))
        .unwrap();
    assert!(
        vm_page0.iter().all(|&b| b == 0),
        "VM page 0 was never written"
    );
    let mut body = 3u32.to_le_bytes().to_vec();
    for v in [REL.spc_node, REL.db_node, REL.rel_node, 0x7] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    f.feed(RmgrId::Storage, 0x20, 0, &[], &body).unwrap();
    assert_eq!(f.size(ForkNumber::Main), Some(3));
    // Heap blocks 0..3 live on FSM leaf block 2, which is kept but zeroed.
    assert_eq!(f.size(ForkNumber::Fsm), Some(3));
    let fsm_leaf = f.get(Key::rel_block(REL, ForkNumber::Fsm, 2)).unwrap();
    assert!(fsm_leaf.iter().all(|&b| b == 0));
    assert_eq!(f.size(ForkNumber::VisibilityMap), Some(1));
}

#[test]
fn vm_truncation_clears_the_bits_of_removed_heap_blocks() {
    let mut f = Fixture::new();
    f.feed(
        RmgrId::Xlog,
        XLOG_FPI,
        0,
        &[image_block(0, ForkNumber::VisibilityMap, 0, page(0xff))],
        &[],
    )
    .unwrap();
    let mut body = 6u32.to_le_bytes().to_vec();
    for v in [REL.spc_node, REL.db_node, REL.rel_node, 0x2] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    f.feed(RmgrId::Storage, 0x20, 0, &[], &body).unwrap();
    let vm = f
        .get(Key::rel_block(REL, ForkNumber::VisibilityMap, 0))
        .unwrap();
    assert_eq!(vm[24], 0xff, "heap blocks 0..4 keep their bits");
    assert_eq!(vm[25], 0x0f, "blocks 4, 5 kept, 6, 7 cleared");
    assert!(vm[26..].iter().all(|&b| b == 0));
    assert_eq!(f.size(ForkNumber::VisibilityMap), Some(1));
}

#[test]
fn buffered_records_become_visible_together_each_at_its_own_lsn() {
    let mut f = Fixture::new();
    f.buffered = true;
    let before = f.timeline.last_record_lsn();
    let ends: Vec<Lsn> = (1..=3u8)
        .map(|fill| {
            let block = image_block(0, ForkNumber::Main, u32::from(fill), page(fill));
            f.feed(RmgrId::Xlog, XLOG_FPI, 0, &[block], &[]).unwrap()
        })
        .collect();
    assert_eq!(f.timeline.last_record_lsn(), before, "nothing visible yet");
    f.ingest.write_buffered(&f.timeline).unwrap();
    assert_eq!(f.timeline.last_record_lsn(), ends[2]);
    assert_eq!(f.timeline.prev_record_lsn(), ends[1]);
    for (i, end) in ends.iter().enumerate() {
        let size = f
            .timeline
            .get_rel_size(REL, ForkNumber::Main, *end)
            .unwrap();
        assert_eq!(
            size,
            Some(i as u32 + 2),
            "relation size at the end of record {i}"
        );
        let block = Key::rel_block(REL, ForkNumber::Main, i as u32 + 1);
        assert_eq!(f.timeline.get(block, *end).unwrap()[100], i as u8 + 1);
    }
    // Re-fed records are skipped, buffered or not.
    f.next = before;
    for fill in 1..=3u8 {
        let block = image_block(0, ForkNumber::Main, u32::from(fill), page(0xee));
        f.feed(RmgrId::Xlog, XLOG_FPI, 0, &[block], &[]).unwrap();
    }
    f.ingest.write_buffered(&f.timeline).unwrap();
    assert_eq!(f.ingest.stats().records_skipped, 3);
    assert_eq!(f.timeline.last_record_lsn(), ends[2]);
}

#[test]
fn a_buffered_record_reading_the_store_sees_the_buffered_ones_before_it() {
    let mut f = Fixture::new();
    f.buffered = true;
    let fpi_end = f
        .feed(
            RmgrId::Xlog,
            XLOG_FPI,
            0,
            &[image_block(0, ForkNumber::VisibilityMap, 0, page(0xff))],
            &[],
        )
        .unwrap();
    assert!(f.timeline.last_record_lsn() < fpi_end);
    // The truncation rewrites the VM page the buffered image wrote.
    let mut body = 6u32.to_le_bytes().to_vec();
    for v in [REL.spc_node, REL.db_node, REL.rel_node, 0x2] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let truncate_end = f.feed(RmgrId::Storage, 0x20, 0, &[], &body).unwrap();
    assert_eq!(
        f.timeline.last_record_lsn(),
        fpi_end,
        "written before the read"
    );
    f.ingest.write_buffered(&f.timeline).unwrap();
    assert_eq!(f.timeline.last_record_lsn(), truncate_end);
    let vm_key = Key::rel_block(REL, ForkNumber::VisibilityMap, 0);
    let vm = f.timeline.get(vm_key, truncate_end).unwrap();
    assert_eq!((vm[24], vm[25]), (0xff, 0x0f));
    let vm = f.timeline.get(vm_key, fpi_end).unwrap();
    assert_eq!((vm[24], vm[25]), (0xff, 0xff));
}

#[test]
fn commit_sets_clog_bits_for_subxacts_on_every_page_and_drops_relations() {
    let mut f = Fixture::new();
    f.feed(
        RmgrId::Storage,
        0x10,
        0,
        &[],
        &smgr_create(ForkNumber::Main),
    )
    .unwrap();
    let top = CLOG_XACTS_PER_PAGE - 1;
    let subxacts = [CLOG_XACTS_PER_PAGE, 2 * CLOG_XACTS_PER_PAGE + 5];
    let (info, mut body) = commit_body(&subxacts, &[REL]);
    // Commit time: one second after the PostgreSQL epoch.
    body[0..8].copy_from_slice(&1_000_000i64.to_le_bytes());
    let commit_end = f.feed(RmgrId::Transaction, info, top, &[], &body).unwrap();
    let commit = f.ingest.last_commit().unwrap();
    assert_eq!(commit.lsn, commit_end);
    assert_eq!(commit.unix_micros, 946_684_801_000_000);
    let page = |n: u32| f.get(Key::slru_block(SlruKind::Clog, 0, n)).unwrap();
    assert_eq!(clog_status(&page(0), top), Some(1));
    assert_eq!(clog_status(&page(1), subxacts[0]), Some(1));
    assert_eq!(clog_status(&page(2), subxacts[1]), Some(1));
    assert_eq!(clog_status(&page(2), subxacts[1] + 1), Some(0));
    let size = f.get(Key::slru_segment_size(SlruKind::Clog, 0)).unwrap();
    assert_eq!(Value::decode_rel_size(&size), Some(3));
    assert!(
        f.rel_dir().is_empty(),
        "the committed drop removes the relation"
    );
    assert_eq!(f.checkpoint().next_xid, reserved_past(subxacts[1]));

    // An abort marks its xids aborted.
    let (_, body) = commit_body(&[], &[]);
    f.feed(RmgrId::Transaction, 0x20 | 0x80, 2000, &[], &body)
        .unwrap();
    let page0 = f.get(Key::slru_block(SlruKind::Clog, 0, 0)).unwrap();
    assert_eq!(clog_status(&page0, 2000), Some(2));
}

/// The next xid ingest stores once `xid` is used: past it, rounded up to
/// the xid reserve.
fn reserved_past(xid: u32) -> u64 {
    (u64::from(xid) + 1).next_multiple_of(walingest::checkpoint::XID_RESERVE)
}

#[test]
fn checkpoint_counters_follow_xids_oids_and_multixacts() {
    let mut f = Fixture::new();
    // Any record's xid counts as used (here an XLOG NOOP).
    f.feed(RmgrId::Xlog, 0x20, 5000, &[], &[]).unwrap();
    assert_eq!(f.checkpoint().next_xid, reserved_past(5000));
    f.feed(RmgrId::Xlog, 0x30, 0, &[], &77777u32.to_le_bytes())
        .unwrap();
    assert_eq!(f.checkpoint().next_oid, 77777);
    // Multixact 1 with members at offsets 0..3.
    let mut body = Vec::new();
    for v in [1u32, 0, 3, 6001, 1, 6002, 3, 6003, 5] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    f.feed(RmgrId::MultiXact, 0x20, 0, &[], &body).unwrap();
    let c = f.checkpoint();
    assert_eq!((c.next_multi, c.next_multi_offset), (2, 3));
    assert_eq!(c.next_xid, reserved_past(6003), "member xids count as used");
    let offsets = f
        .get(Key::slru_block(SlruKind::MultiXactOffsets, 0, 0))
        .unwrap();
    assert_eq!(&offsets[4..8], &0u32.to_le_bytes());
    let members = f
        .get(Key::slru_block(SlruKind::MultiXactMembers, 0, 0))
        .unwrap();
    assert_eq!(&members[0..4], &[1, 3, 5, 0], "one flag byte per member");
    assert_eq!(&members[4..8], &6001u32.to_le_bytes());
    assert_eq!(&members[12..16], &6003u32.to_le_bytes());
    // An online checkpoint never moves counters back.
    let mut online = checkpoint();
    online.next_xid = 10;
    online.oldest_xid = 500;
    f.feed(RmgrId::Xlog, 0x10, 0, &[], &online.serialize())
        .unwrap();
    let c = f.checkpoint();
    assert_eq!(
        (c.next_xid, c.next_oid, c.oldest_xid),
        (reserved_past(6003), 77777, 500)
    );
}

#[test]
fn prepare_writes_the_state_file_and_commit_prepared_removes_it() {
    let mut f = Fixture::new();
    // xl_xact_prepare: magic, total_len, xid, database, prepared_at, owner,
    // nsubxacts, ncommitrels, nabortrels, ncommitstats, nabortstats,
    // ninvalmsgs, initfileinval, gidlen, origin_lsn, origin_timestamp.
    let mut body = Vec::new();
    for v in [0x57F94534u32, 0, 3000, DB] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&0i64.to_le_bytes());
    for v in [10u32, 0, 0, 0, 0, 0, 0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.push(0); // initfileinval
    body.push(0);
    body.extend_from_slice(&2u16.to_le_bytes()); // gidlen
    body.extend_from_slice(&[0u8; 16]); // origin lsn + timestamp
    body.extend_from_slice(b"g\0");
    body.resize(body.len().div_ceil(8) * 8, 0);
    f.feed(RmgrId::Transaction, 0x10, 3000, &[], &body).unwrap();
    let file = f.get(Key::twophase_file(3000)).unwrap();
    assert_eq!(&file[..body.len()], &body[..]);
    assert_eq!(&file[body.len()..], &crc32c::crc32c(&body).to_le_bytes());
    let dir = f.get(Key::twophase_dir()).unwrap();
    assert_eq!(layout::decode_u32_list(&dir).unwrap(), vec![3000]);

    // COMMIT PREPARED: xinfo HAS_TWOPHASE, the prepared xid in the body.
    let mut body = 0i64.to_le_bytes().to_vec();
    body.extend_from_slice(&0x10u32.to_le_bytes());
    body.extend_from_slice(&3000u32.to_le_bytes());
    f.feed(RmgrId::Transaction, 0x30 | 0x80, 0, &[], &body)
        .unwrap();
    let dir = f.get(Key::twophase_dir()).unwrap();
    assert!(layout::decode_u32_list(&dir).unwrap().is_empty());
    let clog = f.get(Key::slru_block(SlruKind::Clog, 0, 0)).unwrap();
    assert_eq!(clog_status(&clog, 3000), Some(1));
}

#[test]
fn non_native_blocks_without_images_are_refused_and_nothing_is_stored() {
    let mut f = Fixture::new();
    let before = f.timeline.last_record_lsn();
    let block = data_block(0, vec![1, 2, 3]);
    let err = f
        .feed(
            RmgrId::ReplicationOrigin,
            0x00,
            0,
            std::slice::from_ref(&block),
            &[0; 16],
        )
        .unwrap_err();
    assert!(matches!(err, IngestError::Unsupported { .. }), "{err}");
    assert!(err.is_wal_problem());
    assert_eq!(f.timeline.last_record_lsn(), before);
    assert!(f.get(Key::rel_dir(SPC, DB)).unwrap().is_empty());
    // The same block of a natively redone manager is stored as a record.
    f.feed(RmgrId::Heap, 0x00, 1500, &[block], &[0; 3]).unwrap();
    assert_eq!(f.ingest.stats().native_records_stored, 1);
}

/// With checksums or `wal_log_hints` on and `full_page_writes` off (as
/// endpoints run), a hint-bit change is logged as an `XLOG_FPI_FOR_HINT`
/// record whose block has no image; PostgreSQL's redo skips it, and so must
/// ingest, leaving the page as it was.
#[test]
fn hint_records_without_an_image_leave_the_page_as_it_was() {
    let mut f = Fixture::new();
    f.feed(
        RmgrId::Xlog,
        XLOG_FPI,
        0,
        &[image_block(0, ForkNumber::Main, 0, page(7))],
        &[],
    )
    .unwrap();
    let before = f.get(Key::rel_block(REL, ForkNumber::Main, 0)).unwrap();
    let hint = data_block(0, Vec::new());
    let end = f
        .feed(RmgrId::Xlog, XLOG_FPI_FOR_HINT, 0, &[hint], &[])
        .unwrap();
    assert_eq!(f.timeline.last_record_lsn(), end);
    assert_eq!(
        f.get(Key::rel_block(REL, ForkNumber::Main, 0)).unwrap(),
        before
    );
    assert_eq!(f.ingest.stats().native_records_stored, 0);
    assert_eq!(f.size(ForkNumber::Main), Some(1));
}

#[test]
fn refeeding_a_record_is_skipped() {
    let mut f = Fixture::new();
    let create = smgr_create(ForkNumber::Main);
    f.feed(RmgrId::Storage, 0x10, 0, &[], &create).unwrap();
    let bytes = encode_record(
        RmgrId::Storage as u8,
        0x10,
        0,
        Lsn(0),
        &[],
        None,
        None,
        &create,
    );
    let raw = RawRecord {
        start_lsn: Lsn(0x1000),
        end_lsn: f.next,
        bytes: &bytes,
    };
    f.ingest.ingest_record(&f.timeline, &raw).unwrap();
    assert_eq!(f.ingest.stats().records_skipped, 1);
    assert_eq!(f.ingest.stats().records_ingested, 1);
}

#[test]
fn clog_zero_pages_grow_segments_and_truncation_removes_old_ones() {
    let mut f = Fixture::new();
    // Pages 31 and 32: the end of segment 0 and the start of segment 1.
    for page in [31i32, 32, 70] {
        f.feed(RmgrId::Clog, 0x00, 0, &[], &page.to_le_bytes())
            .unwrap();
    }
    let segments = |f: &Fixture| {
        layout::decode_u32_list(&f.get(Key::slru_dir(SlruKind::Clog)).unwrap()).unwrap()
    };
    assert_eq!(segments(&f), vec![0, 1, 2]);
    let size = |f: &Fixture, seg| {
        Value::decode_rel_size(&f.get(Key::slru_segment_size(SlruKind::Clog, seg)).unwrap())
    };
    assert_eq!(
        (size(&f, 0), size(&f, 1), size(&f, 2)),
        (Some(32), Some(1), Some(7))
    );
    let zero = f.get(Key::slru_block(SlruKind::Clog, 2, 6)).unwrap();
    assert!(zero.len() == BLCKSZ && zero.iter().all(|&b| b == 0));
    // xl_clog_truncate: cutoff page, oldest xact, its database.
    let mut body = 64i32.to_le_bytes().to_vec();
    body.extend_from_slice(&(64 * CLOG_XACTS_PER_PAGE).to_le_bytes());
    body.extend_from_slice(&DB.to_le_bytes());
    f.feed(RmgrId::Clog, 0x10, 0, &[], &body).unwrap();
    assert_eq!(segments(&f), vec![2], "segments wholly before page 64 go");
}

#[test]
fn multixact_truncation_removes_segments_and_moves_the_oldest_multi() {
    let mut f = Fixture::new();
    // Offsets pages 0 and 40 (segments 0 and 1), members page 0.
    for (info, page) in [(0x00u8, 0i32), (0x00, 40), (0x10, 0)] {
        f.feed(RmgrId::MultiXact, info, 0, &[], &page.to_le_bytes())
            .unwrap();
    }
    let segments =
        |f: &Fixture, kind| layout::decode_u32_list(&f.get(Key::slru_dir(kind)).unwrap()).unwrap();
    assert_eq!(segments(&f, SlruKind::MultiXactOffsets), vec![0, 1]);
    // xl_multixact_truncate: oldest db, offsets [start, end), members [start, end).
    // End multi 40 * 2048 lies on offsets page 40: segment 0 goes.
    let end_multi = 40 * 2048;
    let mut body = Vec::new();
    for v in [DB, 1, end_multi, 0, 0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    f.feed(RmgrId::MultiXact, 0x30, 0, &[], &body).unwrap();
    assert_eq!(segments(&f, SlruKind::MultiXactOffsets), vec![1]);
    assert_eq!(segments(&f, SlruKind::MultiXactMembers), vec![0]);
    let c = f.checkpoint();
    assert_eq!((c.oldest_multi, c.oldest_multi_db), (end_multi, DB));
}

#[test]
fn database_file_copy_copies_the_template_and_drop_forgets_it() {
    let mut f = Fixture::new();
    f.feed(
        RmgrId::Storage,
        0x10,
        0,
        &[],
        &smgr_create(ForkNumber::Main),
    )
    .unwrap();
    f.feed(
        RmgrId::Xlog,
        XLOG_FPI,
        0,
        &[image_block(0, ForkNumber::Main, 1, page(9))],
        &[],
    )
    .unwrap();
    let map = vec![0x5a; 512];
    let mut relmap = Vec::new();
    for v in [DB, SPC, 512] {
        relmap.extend_from_slice(&v.to_le_bytes());
    }
    relmap.extend_from_slice(&map);
    f.feed(RmgrId::RelMap, 0x00, 0, &[], &relmap).unwrap();
    assert_eq!(f.get(Key::relmap_file(SPC, DB)).unwrap(), map);
    // xl_dbase_create_file_copy_rec: db, tablespace, src db, src tablespace.
    let new_db = 77;
    let mut body = Vec::new();
    for v in [new_db, SPC, DB, SPC] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    f.feed(RmgrId::Database, 0x00, 0, &[], &body).unwrap();
    let copy = RelFileNode {
        db_node: new_db,
        ..REL
    };
    let lsn = f.timeline.last_record_lsn();
    assert_eq!(
        f.timeline
            .get_rel_size(copy, ForkNumber::Main, lsn)
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        f.get(Key::rel_block(copy, ForkNumber::Main, 1)),
        f.get(Key::rel_block(REL, ForkNumber::Main, 1))
    );
    assert_eq!(f.get(Key::relmap_file(SPC, new_db)).unwrap(), map);
    let dbs = |f: &Fixture| layout::decode_db_dir(&f.get(Key::db_dir()).unwrap()).unwrap();
    assert_eq!(dbs(&f), vec![(SPC, DB), (SPC, new_db)]);
    // xl_dbase_drop_rec: db, count, tablespaces.
    let mut body = Vec::new();
    for v in [new_db, 1, SPC] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    f.feed(RmgrId::Database, 0x20, 0, &[], &body).unwrap();
    assert_eq!(dbs(&f), vec![(SPC, DB)]);
    let rels = f.get(Key::rel_dir(SPC, new_db)).unwrap();
    assert!(
        rels.is_empty(),
        "a later database with this OID starts empty"
    );
}

/// (manager, info, xid, blocks, main data)
type SyntheticRecord = (RmgrId, u8, u32, Vec<TestBlock>, Vec<u8>);

/// After a restart the store holds what was flushed; the WAL source re-feeds
/// from before that point. Records already stored are skipped, the caches
/// reload from the store, and the result equals an uninterrupted ingest.
#[test]
fn restart_and_refeed_gives_the_same_state() {
    let mut f = Fixture::new();
    let mut records: Vec<SyntheticRecord> = vec![
        (
            RmgrId::Storage,
            0x10,
            0,
            vec![],
            smgr_create(ForkNumber::Main),
        ),
        (
            RmgrId::Xlog,
            XLOG_FPI,
            0,
            vec![image_block(0, ForkNumber::Main, 2, page(3))],
            vec![],
        ),
    ];
    let (info, body) = commit_body(&[1201], &[]);
    records.push((RmgrId::Transaction, info, 1200, vec![], body));
    records.push((
        RmgrId::Xlog,
        XLOG_FPI,
        0,
        vec![image_block(0, ForkNumber::Main, 5, page(4))],
        vec![],
    ));
    let (_, body) = commit_body(&[], &[REL]);
    records.push((RmgrId::Transaction, info, 1300, vec![], body));
    // Encode once, so the re-fed bytes and LSNs are identical.
    let mut raws = Vec::new();
    let mut lsn = f.next;
    for (rmid, info, xid, blocks, main) in &records {
        let bytes = encode_record(*rmid as u8, *info, *xid, Lsn(0), blocks, None, None, main);
        let end = Lsn((lsn.0 + bytes.len() as u64).div_ceil(8) * 8);
        raws.push((lsn, end, bytes));
        lsn = end;
    }
    let feed = |ingest: &mut WalIngest, timeline: &Timeline, range: std::ops::Range<usize>| {
        for (start, end, bytes) in &raws[range] {
            let raw = RawRecord {
                start_lsn: *start,
                end_lsn: *end,
                bytes,
            };
            ingest.ingest_record(timeline, &raw).unwrap();
        }
    };
    feed(&mut f.ingest, &f.timeline, 0..3);
    f.timeline.freeze_and_flush().unwrap();
    let flushed = f.timeline.last_record_lsn();
    let id = f.timeline.id();
    let dir = f._dir;
    f._repo.shutdown();
    drop((f.ingest, f.timeline, f._repo));

    let repo = Repository::open_with(
        dir.path(),
        RepositoryConfig::default(),
        Arc::new(StdFileIo),
        Arc::new(NativeRedo),
    )
    .unwrap();
    let timeline = repo.timeline(id).unwrap();
    assert_eq!(timeline.last_record_lsn(), flushed);
    let mut ingest = WalIngest::new(&timeline).unwrap();
    feed(&mut ingest, &timeline, 0..raws.len());
    assert_eq!(ingest.stats().records_skipped, 3);
    assert_eq!(ingest.stats().records_ingested, 2);
    let at = timeline.last_record_lsn();
    assert_eq!(at, lsn);
    assert_eq!(
        timeline.get_rel_size(REL, ForkNumber::Main, at).unwrap(),
        Some(6)
    );
    let rels = layout::decode_rel_dir(&timeline.get(Key::rel_dir(SPC, DB), at).unwrap()).unwrap();
    assert!(rels.is_empty(), "dropped by the last commit");
    let clog = timeline
        .get(Key::slru_block(SlruKind::Clog, 0, 0), at)
        .unwrap();
    for xid in [1200, 1201, 1300] {
        assert_eq!(clog_status(&clog, xid), Some(1), "xid {xid}");
    }
    let checkpoint = CheckPoint::parse(&timeline.get(Key::checkpoint(), at).unwrap()).unwrap();
    assert_eq!(checkpoint.next_xid, reserved_past(1300));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever body a record of any manager carries, ingest answers with a
    /// value or an error, never a panic.
    #[test]
    fn garbage_bodies_never_panic(
        rmid in 0u8..24,
        info in any::<u8>(),
        xid in any::<u32>(),
        main in proptest::collection::vec(any::<u8>(), 0..200),
        block_data in proptest::collection::vec(any::<u8>(), 0..64),
        blkno in 0u32..64,
        with_block in any::<bool>(),
        image_seed in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
    ) {
        let mut f = Fixture::new();
        // Images with arbitrary headers and special-space offsets reach the
        // GiST and hash fix-ups.
        let image = image_seed.map(|seed| {
            let page: Vec<u8> = seed.iter().copied().cycle().take(BLCKSZ).collect();
            (page, 0, 0)
        });
        let blocks = if with_block {
            vec![TestBlock {
                block_id: 0,
                rel: REL,
                fork: 0,
                blkno,
                will_init: false,
                data: block_data,
                image,
            }]
        } else {
            Vec::new()
        };
        let _ = f.feed_raw(rmid, info & 0xF0, xid, &blocks, &main);
        // Reads of whatever was stored do not panic either.
        let _ = f.timeline.get(Key::rel_block(REL, ForkNumber::Main, blkno), f.timeline.last_record_lsn());
    }
}

/// A stretch of WAL long enough for `ingest_bytes` to decode it on a second
/// thread leaves the same state as its records fed one by one, at every
/// record boundary; a corrupt record stops it after the records before it,
/// which are written.
#[test]
fn a_long_stretch_ingested_on_two_threads_matches_one_by_one_and_stops_at_a_bad_record() {
    use postgres_wal::testwal::WalWriter;
    use postgres_wal::{WalConfig, WalStreamDecoder};
    use walingest::pipelined::PIPELINE_MIN_BYTES;
    use walingest::{FeedError, Ingested};

    const SEG: u64 = 16 * 1024 * 1024;
    let mut wal = WalWriter::new(Lsn(SEG), SEG, 7);
    let mut ends = vec![
        wal.append(
            RmgrId::Storage as u8,
            0x10,
            0,
            &[],
            &smgr_create(ForkNumber::Main),
        )
        .end,
    ];
    // Enough runs of the decoding thread that spent ones come back to be
    // decoded into again.
    for i in 0..600u32 {
        let blkno = i % 40;
        let image = image_block(0, ForkNumber::Main, blkno, page(i as u8));
        ends.push(
            wal.append(RmgrId::Xlog as u8, XLOG_FPI, 0, &[image], &[])
                .end,
        );
        if i % 3 == 0 {
            let (info, body) = commit_body(&[], &[]);
            ends.push(
                wal.append(RmgrId::Transaction as u8, info, 1000 + i, &[], &body)
                    .end,
            );
        }
    }
    assert!(wal.bytes().len() > 2 * PIPELINE_MIN_BYTES);

    let one_by_one = Fixture::new();
    let mut ingest = WalIngest::new(&one_by_one.timeline).unwrap();
    let mut decoder = WalStreamDecoder::new(Lsn(SEG), WalConfig::default());
    decoder.feed_bytes(wal.bytes());
    while let Some(raw) = decoder.poll_raw().unwrap() {
        ingest.ingest_record(&one_by_one.timeline, &raw).unwrap();
    }

    let mut two_threads = Fixture::new();
    let mut decoder = WalStreamDecoder::new(Lsn(SEG), WalConfig::default());
    let mut ingested = Ingested::default();
    two_threads
        .ingest
        .ingest_bytes(
            &two_threads.timeline,
            &mut decoder,
            wal.bytes(),
            &mut ingested,
        )
        .unwrap();
    assert_eq!(ingested.records, ends.len() as u64);
    let head = *ends.last().unwrap();
    assert_eq!(one_by_one.timeline.last_record_lsn(), head);
    assert_eq!(two_threads.timeline.last_record_lsn(), head);
    let state_at = |f: &Fixture, lsn: Lsn| -> Vec<Option<Bytes>> {
        let mut keys: Vec<Key> = (0..40)
            .map(|blkno| Key::rel_block(REL, ForkNumber::Main, blkno))
            .collect();
        keys.extend([Key::checkpoint(), Key::slru_block(SlruKind::Clog, 0, 0)]);
        keys.into_iter()
            .map(|key| match f.timeline.get(key, lsn) {
                Ok(value) => Some(value),
                Err(storage::GetError::KeyNotFound { .. }) => None,
                Err(e) => panic!("{key} at {lsn}: {e}"),
            })
            .collect()
    };
    for &lsn in ends.iter().skip(1).step_by(17).chain([&head]) {
        assert!(
            state_at(&one_by_one, lsn) == state_at(&two_threads, lsn),
            "state differs at {lsn}"
        );
    }

    // Corrupt the middle of the 120th record: it no longer decodes.
    let bad = 120;
    let middle = (ends[bad - 1].0 + ends[bad].0) / 2 - SEG;
    let mut corrupt = wal.bytes().to_vec();
    corrupt[middle as usize] ^= 0xff;
    let mut stopped = Fixture::new();
    let mut decoder = WalStreamDecoder::new(Lsn(SEG), WalConfig::default());
    let mut ingested = Ingested::default();
    let outcome =
        stopped
            .ingest
            .ingest_bytes(&stopped.timeline, &mut decoder, &corrupt, &mut ingested);
    assert!(matches!(outcome, Err(FeedError::Decode(_))), "{outcome:?}");
    assert_eq!(ingested.records, bad as u64);
    let before = ends[bad - 1];
    assert_eq!(stopped.timeline.last_record_lsn(), before);
    assert!(state_at(&one_by_one, before) == state_at(&stopped, before));
}
