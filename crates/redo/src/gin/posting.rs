//! GIN compressed posting lists (`GinPostingList`, PG 9.4+ format): a first
//! TID unpacked, then varbyte-encoded deltas of `block << 11 | offset`,
//! padded to an even length. Decoding, merging and re-encoding exactly as
//! `ginpostinglist.c` does, so rebuilt segments are byte-identical.

use crate::RedoError;

/// A heap TID as (block, offset); the derived order is GIN's TID order.
pub type Tid = (u32, u16);

/// `MaxHeapTuplesPerPageBits`.
const OFFSET_BITS: u32 = 11;
/// `offsetof(GinPostingList, bytes)`.
pub const SEGMENT_HEADER: usize = 8;

fn bad(what: &'static str) -> RedoError {
    RedoError::Inconsistent(what)
}

/// Reads an `ItemPointerData` (block hi, block lo, offset).
pub fn read_tid(bytes: &[u8]) -> Result<Tid, RedoError> {
    let b = bytes.get(..6).ok_or(bad("GIN item pointer truncated"))?;
    let hi = u16::from_le_bytes([b[0], b[1]]);
    let lo = u16::from_le_bytes([b[2], b[3]]);
    let off = u16::from_le_bytes([b[4], b[5]]);
    Ok(((u32::from(hi) << 16) | u32::from(lo), off))
}

/// Appends an `ItemPointerData`.
pub fn write_tid(out: &mut Vec<u8>, (block, off): Tid) {
    out.extend_from_slice(&((block >> 16) as u16).to_le_bytes());
    out.extend_from_slice(&(block as u16).to_le_bytes());
    out.extend_from_slice(&off.to_le_bytes());
}

fn to_u64((block, off): Tid) -> u64 {
    (u64::from(block) << OFFSET_BITS) | u64::from(off)
}

fn from_u64(value: u64) -> Tid {
    (
        (value >> OFFSET_BITS) as u32,
        (value & ((1 << OFFSET_BITS) - 1)) as u16,
    )
}

/// `SizeOfGinPostingList` of the segment starting `bytes`.
pub fn segment_size(bytes: &[u8]) -> Result<usize, RedoError> {
    let n = bytes.get(6..8).ok_or(bad("GIN posting list truncated"))?;
    let nbytes = usize::from(u16::from_le_bytes([n[0], n[1]]));
    let size = SEGMENT_HEADER + nbytes + (nbytes & 1);
    if size > bytes.len() {
        return Err(bad("GIN posting list overruns its data"));
    }
    Ok(size)
}

/// `ginPostingListDecode` of one segment.
pub fn decode_segment(segment: &[u8]) -> Result<Vec<Tid>, RedoError> {
    segment_size(segment)?;
    let first = read_tid(segment)?;
    let n = u16::from_le_bytes([segment[6], segment[7]]);
    let bytes = &segment[SEGMENT_HEADER..SEGMENT_HEADER + usize::from(n)];
    let mut out = vec![first];
    let mut value = to_u64(first);
    let mut at = 0;
    while at < bytes.len() {
        let mut delta = 0u64;
        let mut shift = 0u32;
        loop {
            let c = *bytes.get(at).ok_or(bad("GIN varbyte truncated"))?;
            at += 1;
            if shift == 42 {
                // The seventh byte carries 8 bits and ends the integer.
                delta |= u64::from(c) << shift;
                break;
            }
            delta |= u64::from(c & 0x7F) << shift;
            if c & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        value = value.wrapping_add(delta);
        out.push(from_u64(value));
    }
    Ok(out)
}

/// `ginCompressPostingList` of all of `items` (non-empty, ascending).
pub fn encode_segment(items: &[Tid]) -> Result<Vec<u8>, RedoError> {
    let (&first, rest) = items.split_first().ok_or(bad("empty GIN posting list"))?;
    let mut body = Vec::new();
    let mut prev = to_u64(first);
    for &tid in rest {
        let value = to_u64(tid);
        let mut delta = value.wrapping_sub(prev);
        while delta > 0x7F {
            body.push(0x80 | (delta & 0x7F) as u8);
            delta >>= 7;
        }
        body.push(delta as u8);
        prev = value;
    }
    let nbytes = u16::try_from(body.len()).map_err(|_| bad("GIN posting list too long"))?;
    let mut out = Vec::with_capacity(SEGMENT_HEADER + body.len() + 1);
    write_tid(&mut out, first);
    out.extend_from_slice(&nbytes.to_le_bytes());
    out.extend_from_slice(&body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// `ginMergeItemPointers`: the sorted union, one copy of equal TIDs.
pub fn merge(a: &[Tid], b: &[Tid]) -> Vec<Tid> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(b[j]);
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trips_with_padding() {
        let items = vec![(1, 1), (1, 2), (7, 300), (70_000, 5)];
        let seg = encode_segment(&items).unwrap();
        assert_eq!(seg.len() % 2, 0);
        assert_eq!(segment_size(&seg).unwrap(), seg.len());
        assert_eq!(decode_segment(&seg).unwrap(), items);
        assert_eq!(
            merge(&[(1, 1), (3, 1)], &[(1, 1), (2, 1)]),
            vec![(1, 1), (2, 1), (3, 1)]
        );
    }
}
