//! nbtree index tuples as bytes (`IndexTupleData`, PG13+ posting lists):
//! sizes, heap TIDs, posting-list split (`_bt_swap_posting`), shrink
//! (`_bt_update_posting`) and the deduplication state machine
//! (`_bt_dedup_start_pending` / `save_htid` / `finish_pending`).

use crate::page::{maxalign, Page};
use crate::RedoError;

/// `INDEX_SIZE_MASK`.
const INDEX_SIZE_MASK: u16 = 0x1FFF;
/// `INDEX_ALT_TID_MASK` (nbtree's use of `INDEX_AM_RESERVED_BIT`).
pub const INDEX_ALT_TID_MASK: u16 = 0x2000;
/// `BT_IS_POSTING`.
const BT_IS_POSTING: u16 = 0x2000;
/// `BT_OFFSET_MASK`.
const BT_OFFSET_MASK: u16 = 0x0FFF;
/// `sizeof(ItemPointerData)`.
const TID: usize = 6;
/// `BTMaxItemSize` for 8 kB pages: the largest posting tuple dedup builds.
const BT_MAX_ITEM_SIZE: usize = 2704;

fn short(what: &'static str) -> RedoError {
    RedoError::Inconsistent(what)
}

fn u16_at(t: &[u8], at: usize) -> Result<u16, RedoError> {
    t.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or(short("index tuple too short"))
}

fn t_info(t: &[u8]) -> Result<u16, RedoError> {
    u16_at(t, 6)
}

/// `IndexTupleSize`.
pub fn index_tuple_size(t: &[u8]) -> Result<usize, RedoError> {
    let size = usize::from(t_info(t)? & INDEX_SIZE_MASK);
    if size < 8 {
        return Err(short("index tuple size below header size"));
    }
    Ok(size)
}

/// `ItemPointerSetBlockNumber` on the tuple's own `t_tid`.
pub fn set_block(t: &mut [u8], block: u32) {
    t[0..2].copy_from_slice(&((block >> 16) as u16).to_le_bytes());
    t[2..4].copy_from_slice(&(block as u16).to_le_bytes());
}

fn block(t: &[u8]) -> Result<u32, RedoError> {
    Ok((u32::from(u16_at(t, 0)?) << 16) | u32::from(u16_at(t, 2)?))
}

/// `BTreeTupleIsPosting`.
fn is_posting(t: &[u8]) -> Result<bool, RedoError> {
    Ok(t_info(t)? & INDEX_ALT_TID_MASK != 0 && u16_at(t, 4)? & BT_IS_POSTING != 0)
}

/// The heap TIDs of a posting tuple (or the single TID of a plain one), and
/// the key size (`BTreeTupleGetPostingOffset` or `IndexTupleSize`).
fn tids_and_key_size(t: &[u8]) -> Result<(Vec<[u8; TID]>, usize), RedoError> {
    if !is_posting(t)? {
        let mut tid = [0u8; TID];
        tid.copy_from_slice(&t[..TID]);
        return Ok((vec![tid], index_tuple_size(t)?));
    }
    let n = usize::from(u16_at(t, 4)? & BT_OFFSET_MASK);
    let key_size = block(t)? as usize;
    let list = t
        .get(key_size..key_size + n * TID)
        .ok_or(short("posting list overruns tuple"))?;
    let tids = list
        .chunks_exact(TID)
        .map(|c| {
            let mut tid = [0u8; TID];
            tid.copy_from_slice(c);
            tid
        })
        .collect();
    Ok((tids, key_size))
}

/// `_bt_form_posting` (also the tuple `_bt_update_posting` builds): the key
/// part of `base` followed by `tids` (or a plain tuple for one TID).
fn form_posting(base: &[u8], key_size: usize, tids: &[[u8; TID]]) -> Result<Vec<u8>, RedoError> {
    let new_size = if tids.len() > 1 {
        maxalign(key_size + tids.len() * TID)
    } else {
        key_size
    };
    if new_size > usize::from(INDEX_SIZE_MASK) || key_size < 8 || tids.is_empty() {
        return Err(short("posting tuple size out of range"));
    }
    let mut t = vec![0u8; new_size];
    t[..key_size].copy_from_slice(base.get(..key_size).ok_or(short("key overruns tuple"))?);
    let mut info = (t_info(&t)? & !INDEX_SIZE_MASK) | new_size as u16;
    if tids.len() > 1 {
        info |= INDEX_ALT_TID_MASK;
        t[4..6].copy_from_slice(&(tids.len() as u16 | BT_IS_POSTING).to_le_bytes());
        set_block(&mut t, key_size as u32);
        for (i, tid) in tids.iter().enumerate() {
            t[key_size + i * TID..key_size + (i + 1) * TID].copy_from_slice(tid);
        }
    } else {
        info &= !INDEX_ALT_TID_MASK;
        t[..TID].copy_from_slice(&tids[0]);
    }
    t[6..8].copy_from_slice(&info.to_le_bytes());
    Ok(t)
}

/// `_bt_swap_posting`: returns the posting tuple with `newitem`'s TID
/// inserted at `postingoff` (dropping its last TID), and gives `newitem`
/// that last TID.
pub fn swap_posting(
    newitem: &mut [u8],
    oposting: &[u8],
    postingoff: u16,
) -> Result<Vec<u8>, RedoError> {
    let (tids, key_size) = tids_and_key_size(oposting)?;
    let n = tids.len();
    let off = usize::from(postingoff);
    if !(off > 0 && off < n) || newitem.len() < 8 {
        return Err(short("posting split offset out of range"));
    }
    let size = index_tuple_size(oposting)?;
    let mut nposting = oposting
        .get(..size)
        .ok_or(short("posting tuple truncated"))?
        .to_vec();
    let pos = key_size + off * TID;
    let end = key_size + n * TID;
    nposting.copy_within(pos..end - TID, pos + TID);
    nposting[pos..pos + TID].copy_from_slice(&newitem[..TID]);
    newitem[..TID].copy_from_slice(&tids[n - 1]);
    Ok(nposting)
}

/// `_bt_update_posting`: the posting tuple without the TIDs whose positions
/// (ascending) are listed.
pub fn update_posting(orig: &[u8], deleted: &[u16]) -> Result<Vec<u8>, RedoError> {
    let (tids, key_size) = tids_and_key_size(orig)?;
    let kept: Vec<[u8; TID]> = tids
        .iter()
        .enumerate()
        .filter(|(i, _)| !deleted.contains(&(*i as u16)))
        .map(|(_, tid)| *tid)
        .collect();
    if kept.len() + deleted.len() != tids.len() || kept.is_empty() {
        return Err(short("posting update deletes unknown TIDs"));
    }
    form_posting(orig, key_size, &kept)
}

/// The pending posting list of `btree_xlog_dedup` (`BTDedupStateData`).
#[derive(Default)]
pub struct DedupState {
    base: Vec<u8>,
    pub baseoff: u16,
    base_key_size: usize,
    tids: Vec<[u8; TID]>,
    pub nitems: usize,
    pub nintervals: usize,
}

impl DedupState {
    /// `_bt_dedup_start_pending`.
    pub fn start(&mut self, base: &[u8], baseoff: u16) -> Result<(), RedoError> {
        let (tids, key_size) = tids_and_key_size(base)?;
        self.base = base.to_vec();
        self.baseoff = baseoff;
        self.base_key_size = key_size;
        self.tids = tids;
        self.nitems = 1;
        Ok(())
    }

    /// `_bt_dedup_save_htid`: false when the merged tuple would be too big.
    pub fn save(&mut self, item: &[u8]) -> Result<bool, RedoError> {
        let (tids, _) = tids_and_key_size(item)?;
        let merged = maxalign(self.base_key_size + (self.tids.len() + tids.len()) * TID);
        if merged > BT_MAX_ITEM_SIZE {
            return Ok(false);
        }
        self.tids.extend(tids);
        self.nitems += 1;
        Ok(true)
    }

    /// `_bt_dedup_finish_pending`: append the base tuple (alone) or the
    /// merged posting tuple after the page's last item.
    pub fn finish(&mut self, page: &mut Page<'_>) -> Result<(), RedoError> {
        let offnum = page.max_offset() + 1;
        if self.nitems == 1 {
            let size = index_tuple_size(&self.base)?.min(self.base.len());
            page.add_item(&self.base[..size], offnum, false, false)?;
        } else {
            let merged = form_posting(&self.base, self.base_key_size, &self.tids)?;
            page.add_item(&merged, offnum, false, false)?;
            self.nintervals += 1;
        }
        self.tids.clear();
        self.nitems = 0;
        Ok(())
    }
}
