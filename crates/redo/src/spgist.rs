//! Redo of SP-GiST records (`spg_redo` in `spgxlog.c`): add leaf, move
//! leafs, add node, split tuple, picksplit, and the three vacuum records
//! (leaf, root, redirect).
//!
//! SP-GiST records carry everything in the main data (offset arrays and
//! unaligned tuples) and touch up to four blocks; each block's share is
//! computed here independently of the others, in the order Postgres applies
//! them to that page.
//!
//! Layout: `SpGistPageOpaqueData` (8 bytes: flags, redirection and
//! placeholder counts, page id). Tuples start with a 32-bit word whose low
//! two bits are the tuple state; leaf and dead tuples keep their size in the
//! other 30 bits, inner tuples their node count and prefix size, with the
//! size in the next 16 bits.

use postgres_wal::rmgr::cursor::BodyCursor;

use crate::btree::posting::index_tuple_size;
use crate::page::Page;
use crate::{RedoContext, RedoError};

const XLOG_SPGIST_ADD_LEAF: u8 = 0x10;
const XLOG_SPGIST_MOVE_LEAFS: u8 = 0x20;
const XLOG_SPGIST_ADD_NODE: u8 = 0x30;
const XLOG_SPGIST_SPLIT_TUPLE: u8 = 0x40;
const XLOG_SPGIST_PICKSPLIT: u8 = 0x50;
const XLOG_SPGIST_VACUUM_LEAF: u8 = 0x60;
const XLOG_SPGIST_VACUUM_ROOT: u8 = 0x70;
const XLOG_SPGIST_VACUUM_REDIRECT: u8 = 0x80;

const SPGIST_LEAF: u16 = 1 << 2;
const SPGIST_NULLS: u16 = 1 << 3;
const SPGIST_PAGE_ID: u16 = 0xFF82;
const SIZE_OF_SPGIST_OPAQUE: usize = 8;

const SPGIST_REDIRECT: u32 = 1;
const SPGIST_DEAD: u32 = 2;
const SPGIST_PLACEHOLDER: u32 = 3;
/// `SGDTSIZE`.
const SIZE_OF_DEAD_TUPLE: usize = 16;
/// `SGITHDRSZ`.
const INNER_HEADER: usize = 8;
const INVALID_BLOCK: u32 = u32::MAX;

/// `spgxlogState`, as far as redo needs it.
#[derive(Clone, Copy)]
struct State {
    my_xid: u32,
    is_build: bool,
}

impl State {
    fn read(r: &mut BodyCursor<'_>) -> Result<State, RedoError> {
        r.align(4)?;
        let my_xid = r.u32()?;
        let is_build = r.bool()?;
        r.align(4)?;
        Ok(State { my_xid, is_build })
    }
}

/// The SP-GiST special space of a page.
struct Opaque(usize);

impl Opaque {
    fn of(page: &Page<'_>) -> Result<Opaque, RedoError> {
        let special = usize::from(page.special());
        if special + SIZE_OF_SPGIST_OPAQUE > page.bytes().len() {
            return Err(RedoError::Inconsistent(
                "SP-GiST page without special space",
            ));
        }
        Ok(Opaque(special))
    }
    /// Adds `delta` to the redirection (`which` = 2) or placeholder (4) count.
    fn bump(&self, page: &mut Page<'_>, which: usize, delta: i32) {
        let v = i32::from(page.u16_at(self.0 + which)) + delta;
        page.set_u16_at(self.0 + which, v as u16);
    }
}
const N_REDIRECTION: usize = 2;
const N_PLACEHOLDER: usize = 4;

/// `SpGistInitPage`.
fn init_page(page: &mut Page<'_>, flags: u16) {
    page.init(SIZE_OF_SPGIST_OPAQUE);
    let special = usize::from(page.special());
    page.set_u16_at(special, flags);
    page.set_u16_at(special + 6, SPGIST_PAGE_ID);
}

fn leaf_flags(stores_nulls: bool) -> u16 {
    SPGIST_LEAF | if stores_nulls { SPGIST_NULLS } else { 0 }
}

/// The next unaligned leaf (or dead) tuple in `r`: its size is the word's
/// upper 30 bits.
fn leaf_tuple<'a>(r: &mut BodyCursor<'a>) -> Result<&'a [u8], RedoError> {
    let rest = r.remaining();
    let word = BodyCursor::new(rest, "SP-GiST leaf tuple").u32()?;
    Ok(r.bytes((word >> 2) as usize)?)
}

/// The next unaligned inner tuple in `r` (size in bytes 4..6).
fn inner_tuple<'a>(r: &mut BodyCursor<'a>) -> Result<&'a [u8], RedoError> {
    let rest = r.remaining();
    let mut h = BodyCursor::new(rest, "SP-GiST inner tuple");
    h.u32()?;
    let size = h.u16()?;
    Ok(r.bytes(usize::from(size))?)
}

fn offsets(r: &mut BodyCursor<'_>, n: usize) -> Result<Vec<u16>, RedoError> {
    let bytes = r.bytes(2 * n)?;
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// `addOrReplaceTuple`: an existing item at `offset` must be a placeholder.
fn add_or_replace(page: &mut Page<'_>, tuple: &[u8], offset: u16) -> Result<(), RedoError> {
    if offset <= page.max_offset() {
        let at = page.normal_item(offset, 4)?;
        if page.u32_at(at) & 3 != SPGIST_PLACEHOLDER {
            return Err(RedoError::Inconsistent(
                "SP-GiST tuple to be replaced is not a placeholder",
            ));
        }
        Opaque::of(page)?.bump(page, N_PLACEHOLDER, -1);
        page.index_tuple_delete(offset)?;
    }
    replace_at(page, tuple, offset, false)
}

/// `PageAddItem` that must land exactly at `offset`, after deleting the
/// item there when `delete_first`.
fn replace_at(
    page: &mut Page<'_>,
    tuple: &[u8],
    offset: u16,
    delete_first: bool,
) -> Result<(), RedoError> {
    if delete_first {
        page.index_tuple_delete(offset)?;
    }
    page.add_item(tuple, offset, false, false)?;
    Ok(())
}

/// `spgFormDeadTuple`.
fn dead_tuple(state: State, tupstate: u32, block: u32, offset: u16) -> [u8; SIZE_OF_DEAD_TUPLE] {
    let mut t = [0u8; SIZE_OF_DEAD_TUPLE];
    let word = tupstate | ((SIZE_OF_DEAD_TUPLE as u32) << 2);
    t[0..4].copy_from_slice(&word.to_le_bytes());
    let (block, offset, xid) = if tupstate == SPGIST_REDIRECT {
        (block, offset, state.my_xid)
    } else {
        (INVALID_BLOCK, 0, 0)
    };
    crate::tuple::write_ctid(&mut t, 6, block, offset);
    t[12..16].copy_from_slice(&xid.to_le_bytes());
    t
}

/// `spgPageIndexMultiDelete`: remove `items`, then put dead tuples back at
/// the same offsets (`first_state` for the first listed one).
fn multi_delete(
    page: &mut Page<'_>,
    state: State,
    items: &[u16],
    first_state: u32,
    rest_state: u32,
    target: (u32, u16),
) -> Result<(), RedoError> {
    let Some(&first) = items.first() else {
        return Ok(());
    };
    let mut sorted = items.to_vec();
    sorted.sort_unstable();
    page.index_multi_delete(&sorted)?;
    let opaque = Opaque::of(page)?;
    for &item in &sorted {
        let tupstate = if item == first {
            first_state
        } else {
            rest_state
        };
        let tuple = dead_tuple(state, tupstate, target.0, target.1);
        page.add_item(&tuple, item, false, false)?;
        match tupstate {
            SPGIST_REDIRECT => opaque.bump(page, N_REDIRECTION, 1),
            SPGIST_PLACEHOLDER => opaque.bump(page, N_PLACEHOLDER, 1),
            _ => {}
        }
    }
    Ok(())
}

/// `spgUpdateNodeLink` on the inner tuple at `offset`.
fn update_node_link(
    page: &mut Page<'_>,
    offset: u16,
    node_i: u16,
    block: u32,
    target: u16,
) -> Result<(), RedoError> {
    let range = page.item_range(offset)?;
    let word = page.u32_at(range.start);
    let nnodes = (word >> 3) & 0x1FFF;
    let prefix = (word >> 16) as usize;
    let mut at = range.start + INNER_HEADER + prefix;
    for i in 0..nnodes {
        let node = page
            .bytes()
            .get(at..range.end)
            .ok_or(RedoError::Inconsistent("SP-GiST node beyond its tuple"))?;
        if i == u32::from(node_i) {
            if node.len() < 6 {
                return Err(RedoError::Inconsistent("SP-GiST node truncated"));
            }
            crate::tuple::write_ctid(page.bytes_mut(), at, block, target);
            return Ok(());
        }
        at += index_tuple_size(node)?;
    }
    Err(RedoError::Inconsistent(
        "SP-GiST inner tuple lacks the node",
    ))
}

fn block_no(context: &RedoContext<'_>, block_id: u8) -> Result<u32, RedoError> {
    Ok(context
        .record
        .block(block_id)
        .ok_or(RedoError::NoBlock(block_id))?
        .blkno)
}

/// Applies an SP-GiST record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    match context.record.rmgr_info() {
        XLOG_SPGIST_ADD_LEAF => add_leaf(page, context),
        XLOG_SPGIST_MOVE_LEAFS => move_leafs(page, context),
        XLOG_SPGIST_ADD_NODE => add_node(page, context),
        XLOG_SPGIST_SPLIT_TUPLE => split_tuple(page, context),
        XLOG_SPGIST_PICKSPLIT => pick_split(page, context),
        XLOG_SPGIST_VACUUM_LEAF => vacuum_leaf(page, context),
        XLOG_SPGIST_VACUUM_ROOT => {
            let mut r = BodyCursor::new(&context.record.main_data, "spgxlogVacuumRoot");
            let n = r.u16()?;
            let _state = State::read(&mut r)?;
            let todelete = offsets(&mut r, usize::from(n))?;
            only_block(context, 0)?;
            page.index_multi_delete(&todelete)?;
            Ok(())
        }
        XLOG_SPGIST_VACUUM_REDIRECT => vacuum_redirect(page, context),
        info => Err(RedoError::Unsupported {
            rmgr: "SPGist",
            info,
        }),
    }
}

fn only_block(context: &RedoContext<'_>, block_id: u8) -> Result<(), RedoError> {
    if context.block.block_id == block_id {
        Ok(())
    } else {
        Err(RedoError::NoBlock(context.block.block_id))
    }
}

/// `spgRedoAddLeaf`: block 0 the leaf page, block 1 the parent.
fn add_leaf(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "spgxlogAddLeaf");
    let new_page = r.bool()?;
    let stores_nulls = r.bool()?;
    let leaf = r.u16()?;
    let head = r.u16()?;
    let parent = r.u16()?;
    let node_i = r.u16()?;
    let tuple = leaf_tuple(&mut r)?;
    match context.block.block_id {
        0 => {
            if new_page {
                init_page(page, leaf_flags(stores_nulls));
            }
            if leaf == head {
                // Replacing a dead tuple.
                return replace_at(page, tuple, leaf, true);
            }
            add_or_replace(page, tuple, leaf)?;
            if head != 0 {
                let at = page.normal_item(head, 6)?;
                let t_info = (page.u16_at(at + 4) & 0xC000) | (leaf & 0x3FFF);
                page.set_u16_at(at + 4, t_info);
            }
            Ok(())
        }
        1 if parent != 0 => {
            let leaf_block = block_no(context, 0)?;
            update_node_link(page, parent, node_i, leaf_block, leaf)
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `spgRedoMoveLeafs`: block 0 the source, 1 the destination, 2 the parent.
fn move_leafs(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "spgxlogMoveLeafs");
    let nmoves = usize::from(r.u16()?);
    let new_page = r.bool()?;
    let replace_dead = r.bool()?;
    let stores_nulls = r.bool()?;
    r.align(2)?;
    let parent = r.u16()?;
    let node_i = r.u16()?;
    let state = State::read(&mut r)?;
    let ninsert = if replace_dead { 1 } else { nmoves + 1 };
    let todelete = offsets(&mut r, nmoves)?;
    let toinsert = offsets(&mut r, ninsert)?;
    let last = *toinsert
        .last()
        .ok_or(RedoError::Inconsistent("SP-GiST move without inserts"))?;
    let dest = block_no(context, 1)?;
    match context.block.block_id {
        1 => {
            if new_page {
                init_page(page, leaf_flags(stores_nulls));
            }
            for &offset in &toinsert {
                let tuple = leaf_tuple(&mut r)?;
                add_or_replace(page, tuple, offset)?;
            }
            Ok(())
        }
        0 => {
            let first = if state.is_build {
                SPGIST_PLACEHOLDER
            } else {
                SPGIST_REDIRECT
            };
            multi_delete(
                page,
                state,
                &todelete,
                first,
                SPGIST_PLACEHOLDER,
                (dest, last),
            )
        }
        2 => update_node_link(page, parent, node_i, dest, last),
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `spgRedoAddNode`: in place on block 0, or the enlarged tuple moves to
/// block 1 and block 0 keeps a redirect; the parent link lives on the
/// block `parentBlk` names.
fn add_node(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let mut r = BodyCursor::new(&record.main_data, "spgxlogAddNode");
    let offnum = r.u16()?;
    let offnum_new = r.u16()?;
    let new_page = r.bool()?;
    let parent_blk = r.u8()? as i8;
    let parent = r.u16()?;
    let node_i = r.u16()?;
    let state = State::read(&mut r)?;
    let tuple = inner_tuple(&mut r)?;
    let block_id = context.block.block_id;
    let Some(new_block) = record.block(1).map(|b| b.blkno) else {
        only_block(context, 0)?;
        return replace_at(page, tuple, offnum, true);
    };
    let parent_here = i16::from(parent_blk) == i16::from(block_id);
    match block_id {
        1 => {
            if new_page {
                init_page(page, 0);
            }
            add_or_replace(page, tuple, offnum_new)?;
        }
        0 => {
            let dead = if state.is_build {
                dead_tuple(state, SPGIST_PLACEHOLDER, INVALID_BLOCK, 0)
            } else {
                dead_tuple(state, SPGIST_REDIRECT, new_block, offnum_new)
            };
            replace_at(page, &dead, offnum, true)?;
            let which = if state.is_build {
                N_PLACEHOLDER
            } else {
                N_REDIRECTION
            };
            Opaque::of(page)?.bump(page, which, 1);
        }
        2 if parent_blk == 2 => {}
        other => return Err(RedoError::NoBlock(other)),
    }
    if parent_here {
        update_node_link(page, parent, node_i, new_block, offnum_new)?;
    }
    Ok(())
}

/// `spgRedoSplitTuple`: block 0 gets the prefix tuple (and the postfix one
/// when on the same page), block 1 the postfix tuple otherwise.
fn split_tuple(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "spgxlogSplitTuple");
    let prefix_off = r.u16()?;
    let postfix_off = r.u16()?;
    let new_page = r.bool()?;
    let postfix_same = r.bool()?;
    let prefix = inner_tuple(&mut r)?;
    let postfix = inner_tuple(&mut r)?;
    match context.block.block_id {
        1 if !postfix_same => {
            if new_page {
                init_page(page, 0);
            }
            add_or_replace(page, postfix, postfix_off)
        }
        0 => {
            replace_at(page, prefix, prefix_off, true)?;
            if postfix_same {
                add_or_replace(page, postfix, postfix_off)?;
            }
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// The parsed `spgxlogPickSplit` header.
struct PickSplit {
    is_root_split: bool,
    ndelete: usize,
    ninsert: usize,
    init_src: bool,
    init_dest: bool,
    offnum_inner: u16,
    init_inner: bool,
    stores_nulls: bool,
    inner_is_parent: bool,
    offnum_parent: u16,
    node_i: u16,
    state: State,
}

impl PickSplit {
    fn read(r: &mut BodyCursor<'_>) -> Result<PickSplit, RedoError> {
        let is_root_split = r.bool()?;
        r.align(2)?;
        let ndelete = usize::from(r.u16()?);
        let ninsert = usize::from(r.u16()?);
        let init_src = r.bool()?;
        let init_dest = r.bool()?;
        let offnum_inner = r.u16()?;
        let init_inner = r.bool()?;
        let stores_nulls = r.bool()?;
        let inner_is_parent = r.bool()?;
        r.align(2)?;
        let offnum_parent = r.u16()?;
        let node_i = r.u16()?;
        let state = State::read(r)?;
        Ok(PickSplit {
            is_root_split,
            ndelete,
            ninsert,
            init_src,
            init_dest,
            offnum_inner,
            init_inner,
            stores_nulls,
            inner_is_parent,
            offnum_parent,
            node_i,
            state,
        })
    }
}

/// `spgRedoPickSplit`: block 0 the source leaf page (absent for a root
/// split), 1 the destination leaf page, 2 the page of the new inner tuple,
/// 3 the parent (when not the inner page).
fn pick_split(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "spgxlogPickSplit");
    let x = PickSplit::read(&mut r)?;
    let todelete = offsets(&mut r, x.ndelete)?;
    let toinsert = offsets(&mut r, x.ninsert)?;
    let select = r.bytes(x.ninsert)?.to_vec();
    let inner = inner_tuple(&mut r)?;
    let inner_block = block_no(context, 2)?;
    let block_id = context.block.block_id;
    match block_id {
        0 | 1 => {
            if block_id == 0 && x.is_root_split {
                return Err(RedoError::NoBlock(0));
            }
            let init = if block_id == 0 {
                x.init_src
            } else {
                x.init_dest
            };
            if init {
                init_page(page, leaf_flags(x.stores_nulls));
            } else if block_id == 0 {
                let (first, target) = if x.state.is_build {
                    (SPGIST_PLACEHOLDER, (INVALID_BLOCK, 0))
                } else {
                    (SPGIST_REDIRECT, (inner_block, x.offnum_inner))
                };
                multi_delete(page, x.state, &todelete, first, SPGIST_PLACEHOLDER, target)?;
            }
            for (i, &offset) in toinsert.iter().enumerate() {
                let tuple = leaf_tuple(&mut r)?;
                if (select[i] != 0) == (block_id == 1) {
                    add_or_replace(page, tuple, offset)?;
                }
            }
            Ok(())
        }
        2 => {
            if x.init_inner {
                init_page(page, if x.stores_nulls { SPGIST_NULLS } else { 0 });
            }
            add_or_replace(page, inner, x.offnum_inner)?;
            if x.inner_is_parent {
                update_node_link(page, x.offnum_parent, x.node_i, inner_block, x.offnum_inner)?;
            }
            Ok(())
        }
        3 => update_node_link(page, x.offnum_parent, x.node_i, inner_block, x.offnum_inner),
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `spgRedoVacuumLeaf`.
fn vacuum_leaf(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "spgxlogVacuumLeaf");
    let ndead = usize::from(r.u16()?);
    let nplaceholder = usize::from(r.u16()?);
    let nmove = usize::from(r.u16()?);
    let nchain = usize::from(r.u16()?);
    let state = State::read(&mut r)?;
    let to_dead = offsets(&mut r, ndead)?;
    let to_placeholder = offsets(&mut r, nplaceholder)?;
    let move_src = offsets(&mut r, nmove)?;
    let move_dest = offsets(&mut r, nmove)?;
    let chain_src = offsets(&mut r, nchain)?;
    let chain_dest = offsets(&mut r, nchain)?;
    only_block(context, 0)?;
    let none = (INVALID_BLOCK, 0);
    multi_delete(page, state, &to_dead, SPGIST_DEAD, SPGIST_DEAD, none)?;
    let ph = SPGIST_PLACEHOLDER;
    multi_delete(page, state, &to_placeholder, ph, ph, none)?;
    for (&src, &dest) in move_src.iter().zip(&move_dest) {
        let a = page.existing_item_id(src)?;
        let b = page.existing_item_id(dest)?;
        page.set_item_id(src, b)?;
        page.set_item_id(dest, a)?;
    }
    multi_delete(page, state, &move_src, ph, ph, none)?;
    for (&src, &dest) in chain_src.iter().zip(&chain_dest) {
        let at = page.normal_item(src, 6)?;
        let t_info = (page.u16_at(at + 4) & 0xC000) | (dest & 0x3FFF);
        page.set_u16_at(at + 4, t_info);
    }
    Ok(())
}

/// `spgRedoVacuumRedirect`: redirects become placeholders, trailing
/// placeholders go.
fn vacuum_redirect(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "spgxlogVacuumRedirect");
    let n = usize::from(r.u16()?);
    let first_placeholder = r.u16()?;
    let _newest_redirect_xid = r.u32()?;
    let items = offsets(&mut r, n)?;
    only_block(context, 0)?;
    for &item in &items {
        let at = page.normal_item(item, SIZE_OF_DEAD_TUPLE)?;
        let word = (page.u32_at(at) & !3) | SPGIST_PLACEHOLDER;
        page.set_u32_at(at, word);
        crate::tuple::write_ctid(page.bytes_mut(), at + 6, INVALID_BLOCK, 0);
    }
    let opaque = Opaque::of(page)?;
    let moved = i32::try_from(n).unwrap_or(i32::MAX);
    opaque.bump(page, N_REDIRECTION, -moved);
    opaque.bump(page, N_PLACEHOLDER, moved);
    if first_placeholder != 0 {
        let max = page.max_offset();
        if first_placeholder > max {
            return Err(RedoError::Inconsistent(
                "SP-GiST first placeholder past the end",
            ));
        }
        let todelete: Vec<u16> = (first_placeholder..=max).collect();
        opaque.bump(page, N_PLACEHOLDER, -(todelete.len() as i32));
        page.index_multi_delete(&todelete)?;
    }
    Ok(())
}
