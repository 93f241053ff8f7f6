//! Fuzz target: native redo and masking on arbitrary records and pages.
//!
//! The input picks a resource manager with a redo routine, the info byte,
//! which block to redo, and splits the rest into the main data, the block
//! data and a page (made a valid empty page with the chosen special size
//! first when asked, so the routines get past the header checks). `apply`
//! and `mask` must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postgres_wal::record::{DecodedBlock, DecodedRecord, ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::rmgr::RmgrId;
use postgres_wal::Lsn;

const RMGRS: [RmgrId; 11] = [
    RmgrId::Xlog,
    RmgrId::Heap,
    RmgrId::Heap2,
    RmgrId::Btree,
    RmgrId::Hash,
    RmgrId::Gin,
    RmgrId::Gist,
    RmgrId::Sequence,
    RmgrId::SpGist,
    RmgrId::Brin,
    RmgrId::Generic,
];

fn block(block_id: u8, data: &[u8]) -> DecodedBlock {
    DecodedBlock {
        block_id,
        rel: RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 16384,
        },
        fork: ForkNumber::Main,
        blkno: u32::from(block_id) * 3,
        fork_flags: 0,
        will_init: false,
        image: None,
        data: data.to_vec(),
    }
}

fuzz_target!(|input: &[u8]| {
    let [rmgr, info, which, shape, main_len, data_len, rest @ ..] = input else {
        return;
    };
    let rmgr = RMGRS[usize::from(*rmgr) % RMGRS.len()];
    let (main, rest) = rest.split_at(usize::from(*main_len).min(rest.len()));
    let (data, rest) = rest.split_at((usize::from(*data_len) * 4).min(rest.len()));
    let mut page = vec![0u8; BLCKSZ];
    if shape & 1 == 1 {
        if let Ok(mut view) = redo::Page::new(&mut page) {
            view.init(usize::from(shape >> 1) * 2);
        }
    }
    // The rest pokes (offset, value) pairs into the page.
    for poke in rest.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([poke[0], poke[1]])) % BLCKSZ;
        page[at] = poke[2];
    }
    let record = DecodedRecord {
        start_lsn: Lsn(0x1000),
        end_lsn: Lsn(0x1100),
        total_len: 100,
        xid: 7,
        prev: Lsn(0x800),
        info: *info,
        rmid: rmgr as u8,
        origin: None,
        toplevel_xid: None,
        blocks: (0..4).map(|id| block(id, data)).collect(),
        main_data: main.to_vec(),
    };
    let mut target = page.clone();
    let _ = redo::apply(&mut target, &record, which % 5);
    let _ = redo::mask(rmgr, &mut page, 3);
});
