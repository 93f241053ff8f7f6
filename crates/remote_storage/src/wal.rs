//! Remote WAL objects: the part of a timeline's WAL that is durable in the
//! pageserver's local WAL store but not yet in uploaded layer files (pure:
//! names and the upload plan, no I/O). See `docs/remote-storage.md`.
//!
//! The WAL above the index's `disk_consistent_lsn` is cut at
//! [`WAL_OBJECT_SPAN_BYTES`]-aligned LSN boundaries ("spans"); each object
//! holds the raw WAL bytes of one contiguous range inside one span, named
//! `wal_<start:016X>_<end:016X>-<gen>`. A span's object grows while the
//! span is being written: each upload round replaces the newest, partial
//! object by a longer one (a new name: the end is in it), so complete spans
//! are uploaded once and never again, and the only bytes uploaded twice are
//! those of the one partial span. The index lists the objects that form
//! the chain (`IndexPart::wal`); a reader takes exactly those, never a
//! listing, so a superseded shorter object waiting for deletion is never
//! read.

use serde::{Deserialize, Serialize};

use crate::generation::Generation;

/// Alignment and maximum size of one WAL object: the PostgreSQL default WAL
/// segment size, so a complete object is one segment's bytes.
pub const WAL_OBJECT_SPAN_BYTES: u64 = 16 * 1024 * 1024;

/// Base-name prefix of WAL objects.
pub const WAL_OBJECT_PREFIX: &str = "wal_";

/// One uploaded WAL object as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalObject {
    /// LSN of the first byte.
    pub start_lsn: u64,
    /// LSN after the last byte (the object holds `end_lsn - start_lsn` bytes).
    pub end_lsn: u64,
    /// CRC-32C of the object's bytes.
    pub crc32c: u32,
    /// The generation whose upload holds it (its object name suffix).
    pub generation: Generation,
    /// The stream the bytes came from (its WAL source's stream start):
    /// a chain is only ever continued with bytes of the same stream.
    pub stream_lsn: u64,
}

impl WalObject {
    /// Bytes in the object.
    pub fn size_bytes(&self) -> u64 {
        self.end_lsn.saturating_sub(self.start_lsn)
    }

    /// Base name without the generation suffix.
    pub fn name(&self) -> String {
        object_name(self.start_lsn, self.end_lsn)
    }

    /// Whether the object reaches the end of its span: it never grows again.
    pub fn is_complete(&self) -> bool {
        self.end_lsn.is_multiple_of(WAL_OBJECT_SPAN_BYTES)
    }
}

/// `wal_<start:016X>_<end:016X>`.
pub fn object_name(start_lsn: u64, end_lsn: u64) -> String {
    format!("{WAL_OBJECT_PREFIX}{start_lsn:016X}_{end_lsn:016X}")
}

/// Reads an object's base name back into its range.
pub fn parse_object_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(WAL_OBJECT_PREFIX)?;
    let (start, end) = rest.split_once('_')?;
    let hex = |text: &str| {
        (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
    };
    Some((hex(start)?, hex(end)?))
}

/// End of the span holding `lsn` (the next aligned boundary above it).
pub fn span_end(lsn: u64) -> u64 {
    (lsn / WAL_OBJECT_SPAN_BYTES)
        .saturating_add(1)
        .saturating_mul(WAL_OBJECT_SPAN_BYTES)
}

/// Checks that `objects` form a chain: each non-empty, inside one span,
/// starting where the previous one ends, from no later generation than
/// `generation`.
pub fn validate_chain(objects: &[WalObject], generation: Generation) -> Result<(), String> {
    let mut expected: Option<u64> = None;
    for object in objects {
        if object.end_lsn <= object.start_lsn {
            return Err(format!("WAL object {} is empty", object.name()));
        }
        if object.end_lsn > span_end(object.start_lsn) {
            return Err(format!("WAL object {} crosses a span", object.name()));
        }
        if object.generation > generation {
            return Err(format!(
                "WAL object {} is from generation {} but the index is generation {generation}",
                object.name(),
                object.generation
            ));
        }
        if let Some(expected) = expected.filter(|e| *e != object.start_lsn) {
            return Err(format!(
                "WAL object {} does not start where the previous one ends ({expected:X})",
                object.name()
            ));
        }
        expected = Some(object.end_lsn);
    }
    Ok(())
}

/// The local WAL an upload round can read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWal {
    /// Identifies the stream the local bytes come from (the WAL source's
    /// stream start): objects of another stream are never continued.
    pub stream_lsn: u64,
    /// Readable local range: `start..end`, end = the durable end.
    pub range: std::ops::Range<u64>,
    /// Where a fresh chain begins: the layers' LSN when the local range
    /// holds it, the stream start when the source was attached at exactly
    /// the layers' LSN (the bytes between hold no record), else `None`.
    pub from: Option<u64>,
}

/// What one upload round does with a timeline's WAL objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalUploadPlan {
    /// Objects of the previous chain that stay as they are.
    pub keep: Vec<WalObject>,
    /// Ranges to upload, in order; each continues the chain (the first may
    /// replace the previous partial object, see `replaces`).
    pub upload: Vec<std::ops::Range<u64>>,
    /// Previous objects no longer in the chain once the plan is done
    /// (below the layers, of another stream, or the partial object being
    /// replaced).
    pub drop: Vec<WalObject>,
    /// The previous objects of the last span that `upload[0]` merges into
    /// one (same start as the first, longer), once the span holds
    /// [`MAX_PIECES_PER_SPAN`]; empty otherwise. They stay in the chain if
    /// that upload fails.
    pub replaces: Vec<WalObject>,
}

/// How many objects of one span a chain holds before a round merges them
/// into one. Each round appends only its new bytes as an object of their
/// own (so a round uploads what is new, not the whole growing span); the
/// merge bounds the index's length and the objects a recovery reads, and
/// re-uploads at most one span per this many rounds.
pub const MAX_PIECES_PER_SPAN: usize = 32;

/// Plans a round. `previous`: the chain of the last index. `disk_lsn`: the
/// `disk_consistent_lsn` the new index will carry (everything at or below
/// is in its layers). `local`: the local WAL, if a source is streaming.
pub fn plan_upload(
    previous: &[WalObject],
    disk_lsn: u64,
    local: Option<&LocalWal>,
) -> WalUploadPlan {
    let (mut keep, mut drop): (Vec<WalObject>, Vec<WalObject>) =
        previous.iter().partition(|o| o.end_lsn > disk_lsn);
    let continues = |local: &LocalWal| {
        keep.iter().all(|o| o.stream_lsn == local.stream_lsn)
            && keep.first().is_none_or(|first| {
                first.start_lsn <= disk_lsn || Some(first.start_lsn) == local.from
            })
    };
    if local.is_some_and(|local| !continues(local)) {
        // Bytes of another stream, or not continuing the layers: start
        // the chain afresh from the local WAL.
        drop.append(&mut keep);
    }
    let mut plan = WalUploadPlan {
        keep,
        upload: Vec::new(),
        drop,
        replaces: Vec::new(),
    };
    let Some(local) = local else {
        return plan;
    };
    let range = &local.range;
    let mut at = match (plan.keep.last(), local.from) {
        (Some(last), _) => last.end_lsn,
        (None, Some(from)) => from,
        (None, None) => return plan,
    };
    if range.end <= at {
        return plan;
    }
    if let Some(last) = plan.keep.last().copied() {
        // The pieces of the last, still growing span: merged into one when
        // there are enough of them and the store still holds their start.
        let span_start = span_end(last.start_lsn) - WAL_OBJECT_SPAN_BYTES;
        let pieces = plan
            .keep
            .iter()
            .rev()
            .take_while(|o| o.start_lsn >= span_start)
            .count();
        let first = plan.keep.len() - pieces;
        if !last.is_complete()
            && pieces >= MAX_PIECES_PER_SPAN
            && range.start <= plan.keep[first].start_lsn
        {
            at = plan.keep[first].start_lsn;
            plan.replaces = plan.keep.split_off(first);
        }
    }
    if range.start > at {
        // The local store no longer holds where the chain continues.
        plan.keep.append(&mut plan.replaces);
        return plan;
    }
    while at < range.end {
        let end = span_end(at).min(range.end);
        plan.upload.push(at..end);
        at = end;
    }
    plan.drop.extend(plan.replaces.iter().copied());
    plan
}

/// The end of WAL the chain makes durable above `disk_lsn`: its last end,
/// or `disk_lsn` when the chain is empty.
pub fn chain_end(objects: &[WalObject], disk_lsn: u64) -> u64 {
    objects.last().map_or(disk_lsn, |o| o.end_lsn.max(disk_lsn))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: u64 = WAL_OBJECT_SPAN_BYTES;
    const STREAM: u64 = 40;

    fn object(start: u64, end: u64, generation: u32) -> WalObject {
        WalObject {
            start_lsn: start,
            end_lsn: end,
            crc32c: 0,
            generation: Generation(generation),
            stream_lsn: STREAM,
        }
    }

    fn local(range: std::ops::Range<u64>, from: Option<u64>) -> LocalWal {
        LocalWal {
            stream_lsn: STREAM,
            range,
            from,
        }
    }

    #[test]
    fn names_round_trip() {
        let name = object_name(0x16B_3A28, 0x100_0000);
        assert_eq!(name, "wal_00000000016B3A28_0000000001000000");
        assert_eq!(parse_object_name(&name), Some((0x16B_3A28, 0x100_0000)));
        assert_eq!(
            Generation(3).suffixed(&name),
            "wal_00000000016B3A28_0000000001000000-00000003"
        );
        for bad in ["wal_1_2", "xal_00000000016B3A28_0000000001000000", "wal_"] {
            assert_eq!(parse_object_name(bad), None, "{bad}");
        }
    }

    /// A fresh chain starts at the layers' LSN and is cut at span
    /// boundaries; the last piece is partial.
    #[test]
    fn a_fresh_chain_is_cut_at_spans() {
        let disk = SPAN - 100;
        let plan = plan_upload(&[], disk, Some(&local(0..2 * SPAN + 5, Some(disk))));
        assert_eq!(
            plan.upload,
            vec![disk..SPAN, SPAN..2 * SPAN, 2 * SPAN..2 * SPAN + 5]
        );
        assert!(plan.keep.is_empty() && plan.drop.is_empty());
        assert!(plan.replaces.is_empty());
    }

    /// Complete objects are never uploaded again; a partial one is not
    /// either: the new bytes follow it as an object of their own.
    #[test]
    fn only_new_bytes_are_uploaded() {
        let disk = 100;
        let previous = [object(100, SPAN, 1), object(SPAN, SPAN + 50, 1)];
        let plan = plan_upload(&previous, disk, Some(&local(0..SPAN + 80, Some(disk))));
        assert_eq!(plan.keep, previous.to_vec());
        assert_eq!(plan.upload, vec![SPAN + 50..SPAN + 80]);
        assert!(plan.replaces.is_empty() && plan.drop.is_empty());
        // Nothing new: nothing uploaded, nothing dropped.
        let plan = plan_upload(&previous, disk, Some(&local(0..SPAN + 50, Some(disk))));
        assert_eq!(plan.keep, previous.to_vec());
        assert!(plan.upload.is_empty() && plan.drop.is_empty());
    }

    /// A span filled over many rounds: each round uploads its new bytes
    /// only, except one merge per `MAX_PIECES_PER_SPAN` rounds (at most
    /// one span); the chain never holds more pieces of a span than that.
    #[test]
    fn a_growing_span_uploads_new_bytes_plus_a_bounded_merge() {
        let step = SPAN / 100;
        let mut chain: Vec<WalObject> = Vec::new();
        let mut uploaded_total = 0;
        let mut end = step;
        while end <= SPAN {
            let plan = plan_upload(&chain, 0, Some(&local(0..end, Some(0))));
            let bytes: u64 = plan.upload.iter().map(|r| r.end - r.start).sum();
            let new = end - chain_end(&chain, 0);
            if plan.replaces.is_empty() {
                assert_eq!(bytes, new, "a round without a merge uploads only new bytes");
            } else {
                assert_eq!(plan.replaces.len(), MAX_PIECES_PER_SPAN);
                assert_eq!(plan.drop, plan.replaces);
                assert!(bytes <= SPAN);
            }
            uploaded_total += bytes;
            chain = plan.keep.clone();
            chain.extend(plan.upload.iter().map(|r| object(r.start, r.end, 1)));
            assert!(validate_chain(&chain, Generation(1)).is_ok());
            assert!(chain.len() <= MAX_PIECES_PER_SPAN, "{}", chain.len());
            end += step;
        }
        // Replacing the partial object every round would upload ~50 spans.
        assert!(uploaded_total < 3 * SPAN, "{uploaded_total}");
    }

    /// Merging needs the store to still hold the span's first piece;
    /// otherwise the pieces stay and only new bytes go up.
    #[test]
    fn no_merge_when_the_store_lost_the_first_piece() {
        let pieces: Vec<WalObject> = (0..MAX_PIECES_PER_SPAN as u64)
            .map(|i| object(100 + i * 10, 110 + i * 10, 1))
            .collect();
        let end = pieces.last().unwrap().end_lsn;
        let plan = plan_upload(&pieces, 100, Some(&local(100..end + 5, Some(100))));
        assert_eq!(plan.upload, vec![100..end + 5]);
        assert_eq!(plan.replaces, pieces);
        let plan = plan_upload(&pieces, 100, Some(&local(105..end + 5, Some(100))));
        assert_eq!(plan.upload, vec![end..end + 5]);
        assert_eq!(plan.keep, pieces);
        assert!(plan.replaces.is_empty() && plan.drop.is_empty());
    }

    /// Objects wholly below the layers go; one straddling them stays.
    /// Without local WAL (no source streaming) the rest is kept as is.
    #[test]
    fn objects_below_the_layers_are_dropped() {
        let previous = [object(100, SPAN, 1), object(SPAN, SPAN + 50, 2)];
        let plan = plan_upload(&previous, SPAN + 10, None);
        assert_eq!(plan.keep, vec![previous[1]]);
        assert_eq!(plan.drop, vec![previous[0]]);
        let plan = plan_upload(&previous, SPAN + 50, None);
        assert!(plan.keep.is_empty());
        assert_eq!(plan.drop, previous.to_vec());
    }

    /// When the local store no longer holds the partial object's start,
    /// the chain continues with a new object after it instead.
    #[test]
    fn a_truncated_store_continues_after_the_partial_object() {
        let previous = [object(100, 500, 1)];
        let plan = plan_upload(&previous, 100, Some(&local(300..900, Some(100))));
        assert_eq!(plan.keep, previous.to_vec());
        assert_eq!(plan.upload, vec![500..900]);
        assert!(plan.replaces.is_empty());
        // A gap between the chain and the store: nothing can be uploaded.
        let plan = plan_upload(&previous, 100, Some(&local(600..900, None)));
        assert_eq!(plan.keep, previous.to_vec());
        assert!(plan.upload.is_empty() && plan.drop.is_empty());
        let plan = plan_upload(&[], 100, Some(&local(600..900, None)));
        assert!(plan.upload.is_empty());
    }

    /// A chain starting above the layers is kept only when it starts at
    /// the stream start of a source attached at the layers' LSN.
    #[test]
    fn a_chain_above_the_layers_must_start_at_the_stream_start() {
        let previous = [object(140, 500, 1)];
        let plan = plan_upload(&previous, 100, Some(&local(140..600, Some(140))));
        assert_eq!(plan.keep, previous.to_vec());
        assert_eq!(plan.upload, vec![500..600]);
        let plan = plan_upload(&previous, 100, Some(&local(100..600, Some(100))));
        assert_eq!(plan.upload, vec![100..600]);
        assert_eq!(plan.drop, previous.to_vec());
        // No source streaming: kept, whatever it continues.
        let plan = plan_upload(&previous, 100, None);
        assert_eq!(plan.keep, previous.to_vec());
    }

    /// A new source (another stream) never continues the old chain, even
    /// where the ranges would line up.
    #[test]
    fn another_stream_starts_a_fresh_chain() {
        let previous = [object(100, 500, 1)];
        let other = LocalWal {
            stream_lsn: 120,
            range: 120..700,
            from: Some(120),
        };
        let plan = plan_upload(&previous, 100, Some(&other));
        assert!(plan.keep.is_empty());
        assert_eq!(plan.drop, previous.to_vec());
        assert_eq!(plan.upload, vec![120..700]);
    }

    #[test]
    fn chains_are_validated() {
        let good = [object(100, SPAN, 1), object(SPAN, SPAN + 1, 2)];
        assert!(validate_chain(&good, Generation(2)).is_ok());
        assert!(validate_chain(&good, Generation(1)).is_err());
        assert!(validate_chain(&[object(5, 5, 1)], Generation(1)).is_err());
        assert!(validate_chain(&[object(5, SPAN + 1, 1)], Generation(1)).is_err());
        let gap = [object(100, 200, 1), object(201, 300, 1)];
        assert!(validate_chain(&gap, Generation(1)).is_err());
        assert_eq!(chain_end(&good, 5), SPAN + 1);
        assert_eq!(chain_end(&[], 5), 5);
    }
}
