//! `apply` and `mask` on garbage: random record bodies, block data, info
//! bits and pages must give `Ok` or `Err`, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postgres_wal::record::{
    BlockImage, DecodedBlock, DecodedRecord, ForkNumber, RelFileNode, BLCKSZ,
};
use postgres_wal::rmgr::RmgrId;
use postgres_wal::Lsn;
use proptest::prelude::*;

const RMGRS: [RmgrId; 11] = [
    RmgrId::Xlog,
    RmgrId::Heap,
    RmgrId::Heap2,
    RmgrId::Btree,
    RmgrId::Sequence,
    RmgrId::Hash,
    RmgrId::Gin,
    RmgrId::Gist,
    RmgrId::SpGist,
    RmgrId::Brin,
    RmgrId::Generic,
];

fn block(block_id: u8, data: Vec<u8>, will_init: bool, image: Option<Vec<u8>>) -> DecodedBlock {
    DecodedBlock {
        block_id,
        rel: RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 16384,
        },
        fork: ForkNumber::Main,
        blkno: u32::from(block_id) * 7,
        fork_flags: 0,
        will_init,
        image: image.map(|page| BlockImage {
            page,
            apply: false,
            info: 0,
            hole_offset: 0,
            hole_length: 0,
        }),
        data,
    }
}

/// A page that is either random bytes or a valid empty page with random
/// bytes sprinkled over it (so parsers get past the header checks).
fn page_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), BLCKSZ),
        proptest::collection::vec((0usize..BLCKSZ, any::<u8>()), 0..64),
        0usize..64,
    )
        .prop_map(|(structured, random, pokes, special)| {
            if !structured {
                return random;
            }
            let mut page = vec![0u8; BLCKSZ];
            redo::Page::new(&mut page).unwrap().init(special);
            for (at, value) in pokes {
                page[at] = value;
            }
            page
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn apply_never_panics(
        rmgr in 0usize..RMGRS.len(),
        info in any::<u8>(),
        xid in any::<u32>(),
        main_data in proptest::collection::vec(any::<u8>(), 0..64),
        data0 in proptest::collection::vec(any::<u8>(), 0..256),
        data1 in proptest::collection::vec(any::<u8>(), 0..64),
        nblocks in 1u8..=5,
        which in 0u8..5,
        will_init in any::<bool>(),
        page in page_strategy(),
    ) {
        let blocks = (0..nblocks)
            .map(|id| block(id, if id == 0 { data0.clone() } else { data1.clone() }, will_init, None))
            .collect();
        let record = DecodedRecord {
            start_lsn: Lsn(0x1000),
            end_lsn: Lsn(0x1100),
            total_len: 100,
            xid,
            prev: Lsn(0x800),
            info,
            rmid: RMGRS[rmgr] as u8,
            origin: None,
            toplevel_xid: None,
            blocks,
            main_data,
        };
        let mut target = page.clone();
        let _ = redo::apply(&mut target, &record, which);
        prop_assert_eq!(target.len(), BLCKSZ);
        for rmgr in RMGRS {
            let mut masked = page.clone();
            let _ = redo::mask(rmgr, &mut masked, 3);
        }
        let _ = redo::vm::vm_changes(&record);
        let mut checker = redo::check::Checker::new();
        let mut imaged = record.clone();
        for block in &mut imaged.blocks {
            block.image = Some(BlockImage {
                page: page.clone(),
                apply: false,
                info: 0,
                hole_offset: 0,
                hole_length: 0,
            });
        }
        checker.feed(&imaged);
        checker.feed(&imaged);
    }

    #[test]
    fn wrong_page_size_is_an_error(len in 0usize..10_000) {
        prop_assume!(len != BLCKSZ);
        let record = DecodedRecord {
            start_lsn: Lsn(1),
            end_lsn: Lsn(2),
            total_len: 0,
            xid: 0,
            prev: Lsn(0),
            info: 0,
            rmid: RmgrId::Heap as u8,
            origin: None,
            toplevel_xid: None,
            blocks: vec![block(0, vec![], false, None)],
            main_data: vec![],
        };
        let mut page = vec![0u8; len];
        prop_assert!(redo::apply(&mut page, &record, 0).is_err());
    }
}
