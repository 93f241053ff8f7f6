//! The checkpoint value (`Key::checkpoint`): next xid / oid / multixact and
//! the oldest-xid horizons a server started from a base backup continues
//! from. It must never let that server reuse an id the WAL already used, so
//! every record advances it (`GetNewTransactionId` and friends never log the
//! counters themselves, except NEXTOID and checkpoints).
//!
//! The next xid runs ahead of the WAL by up to [`XID_RESERVE`], the way
//! PostgreSQL's next oid runs ahead by a NEXTOID prefetch: a server started
//! at any LSN may skip a few xids, never reuse one. Tracked exactly, the
//! value changed with every transaction's first record, and one in six
//! records of a pgbench stream stored a new checkpoint value.
//!
//! Comparisons of 32-bit xids and multixact ids are circular, as in
//! `TransactionIdPrecedes`; the 64-bit next xid carries the epoch.

use postgres_wal::control::CheckPoint;

/// `FirstNormalTransactionId`: xids below it are special and never assigned.
const FIRST_NORMAL_XID: u32 = 3;
/// The next xid is kept at a multiple of this past the newest xid seen (see
/// the module documentation). A power of two below `CLOG_XACTS_PER_PAGE`
/// (32,768), so the reserve never reaches past the first xid of the next
/// CLOG page: a server whose first xid opens a page zeroes that page
/// itself (`ExtendCLOG`), as it does after an exact count.
pub const XID_RESERVE: u64 = 64;
/// `FirstMultiXactId`.
const FIRST_MULTI: u32 = 1;

/// `TransactionIdPrecedes` for normal xids (circular, modulo 2^32).
pub fn xid_precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The checkpoint state with a "changed" flag, so it is stored only when a
/// record moved it.
#[derive(Clone, Debug)]
pub struct CheckpointState {
    pub value: CheckPoint,
    pub dirty: bool,
}

impl CheckpointState {
    pub fn new(value: CheckPoint) -> CheckpointState {
        CheckpointState {
            value,
            dirty: false,
        }
    }

    /// Makes the next xid follow `xid` (a 32-bit xid seen in the WAL),
    /// moving it to the first multiple of [`XID_RESERVE`] past `xid` when it
    /// moves at all. Special xids (bootstrap, frozen, invalid) are ignored.
    pub fn advance_xid(&mut self, xid: u32) {
        if xid < FIRST_NORMAL_XID {
            return;
        }
        let next = self.value.next_xid;
        let next32 = next as u32;
        if xid_precedes(xid, next32) {
            return;
        }
        // `xid` is at or after next32 in circular order: the new next is
        // xid + 1 in the same epoch, or the next one if the 32-bit counter
        // wrapped between them.
        let mut epoch = next >> 32;
        if xid < next32 {
            epoch = epoch.saturating_add(1);
        }
        // Saturating: a garbage epoch near 2^32 must not overflow.
        let new = epoch.saturating_mul(1 << 32).saturating_add(u64::from(xid));
        let mut new = new
            .saturating_add(1)
            .checked_next_multiple_of(XID_RESERVE)
            .unwrap_or(u64::MAX);
        if (new as u32) < FIRST_NORMAL_XID {
            // `FullTransactionIdAdvance` skips the special xids after a wrap.
            new = (new & !0xffff_ffff) | u64::from(FIRST_NORMAL_XID);
        }
        if new > next {
            self.value.next_xid = new;
            self.dirty = true;
        }
    }

    /// `XLOG_NEXTOID`: the server reserved oids up to `next_oid`.
    pub fn set_next_oid(&mut self, next_oid: u32) {
        if self.value.next_oid != next_oid {
            self.value.next_oid = next_oid;
            self.dirty = true;
        }
    }

    /// A multixact `multi` with members at `offset..offset + members` exists
    /// (`MultiXactAdvanceNextMXact`).
    pub fn advance_multi(&mut self, multi: u32, offset: u32, members: u32) {
        let mut next_multi = multi.wrapping_add(1);
        if next_multi < FIRST_MULTI {
            next_multi = FIRST_MULTI;
        }
        if xid_precedes(self.value.next_multi, next_multi) {
            self.value.next_multi = next_multi;
            self.dirty = true;
        }
        let next_offset = offset.wrapping_add(members);
        if xid_precedes(self.value.next_multi_offset, next_offset) {
            self.value.next_multi_offset = next_offset;
            self.dirty = true;
        }
    }

    /// A multixact truncation moved the oldest multixact.
    pub fn set_oldest_multi(&mut self, oldest_multi: u32, oldest_multi_db: u32) {
        if xid_precedes(self.value.oldest_multi, oldest_multi) {
            self.value.oldest_multi = oldest_multi;
            self.value.oldest_multi_db = oldest_multi_db;
            self.dirty = true;
        }
    }

    /// A checkpoint record (`xlog_redo`): a shutdown checkpoint states the
    /// counters exactly; an online one was taken while ids kept being
    /// assigned, so counters only move forward and the next oid (which only
    /// NEXTOID records track precisely) is left alone. Either way the next
    /// xid and multixact never move backwards.
    pub fn apply_checkpoint_record(&mut self, record: &CheckPoint, shutdown: bool) {
        let mut new = record.clone();
        let ours = &self.value;
        new.next_xid = new.next_xid.max(ours.next_xid);
        if xid_precedes(new.next_multi, ours.next_multi) {
            new.next_multi = ours.next_multi;
        }
        if xid_precedes(new.next_multi_offset, ours.next_multi_offset) {
            new.next_multi_offset = ours.next_multi_offset;
        }
        if !shutdown {
            new.next_oid = ours.next_oid;
            if xid_precedes(record.oldest_xid, ours.oldest_xid) {
                new.oldest_xid = ours.oldest_xid;
                new.oldest_xid_db = ours.oldest_xid_db;
            }
            if xid_precedes(record.oldest_multi, ours.oldest_multi) {
                new.oldest_multi = ours.oldest_multi;
                new.oldest_multi_db = ours.oldest_multi_db;
            }
        }
        if new != self.value {
            self.value = new;
            self.dirty = true;
        }
    }

    /// `XLOG_END_OF_RECOVERY`: the server switched to a new timeline.
    pub fn set_timeline(&mut self, this_timeline: u32, prev_timeline: u32) {
        if self.value.this_timeline_id != this_timeline {
            self.value.this_timeline_id = this_timeline;
            self.value.prev_timeline_id = prev_timeline;
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(next_xid: u64) -> CheckpointState {
        let value = CheckPoint {
            redo: 0,
            this_timeline_id: 1,
            prev_timeline_id: 1,
            full_page_writes: true,
            next_xid,
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
        };
        CheckpointState::new(value)
    }

    #[test]
    fn next_xid_runs_ahead_of_every_xid_and_never_goes_back() {
        let mut s = state(1000);
        s.advance_xid(999);
        assert_eq!(s.value.next_xid, 1000);
        assert!(!s.dirty);
        s.advance_xid(1000);
        assert_eq!(s.value.next_xid, 1024);
        assert!(s.dirty);
        // The xids up to the reserve's end change nothing.
        s.dirty = false;
        for xid in 1001..1024 {
            s.advance_xid(xid);
        }
        assert!(!s.dirty);
        s.advance_xid(1024);
        assert_eq!(s.value.next_xid, 1088);
        s.advance_xid(5000);
        assert_eq!(s.value.next_xid, 5056);
        s.advance_xid(0);
        s.advance_xid(2);
        assert_eq!(s.value.next_xid, 5056);
        // The reserve ends at a CLOG page's first xid at the latest.
        s.advance_xid(32_767);
        assert_eq!(s.value.next_xid, 32_768);
    }

    #[test]
    fn xid_wraparound_moves_to_the_next_epoch() {
        let mut s = state((7 << 32) | 0xffff_fff0);
        s.advance_xid(5);
        assert_eq!(s.value.next_xid, (8 << 32) | 64);
        // Near the end of an epoch: next skips the special xids.
        let mut s = state((7 << 32) | 0xffff_ff00);
        s.advance_xid(0xffff_ffc5);
        assert_eq!(s.value.next_xid, (8 << 32) | 3);
        let mut s = state((7 << 32) | 0xffff_fff0);
        s.advance_xid(0xffff_ffff);
        assert_eq!(s.value.next_xid, (8 << 32) | 3);
        // A much older xid (circularly before next) changes nothing.
        let mut s = state((7 << 32) | 100);
        s.advance_xid(0xf000_0000);
        assert_eq!(s.value.next_xid, (7 << 32) | 100);
    }

    #[test]
    fn multixact_counters_advance_past_members() {
        let mut s = state(1000);
        s.advance_multi(1, 0, 2);
        assert_eq!((s.value.next_multi, s.value.next_multi_offset), (2, 2));
        s.advance_multi(1, 0, 2);
        assert_eq!((s.value.next_multi, s.value.next_multi_offset), (2, 2));
        s.advance_multi(5, 10, 3);
        assert_eq!((s.value.next_multi, s.value.next_multi_offset), (6, 13));
        // The multixact counter wraps to FirstMultiXactId, skipping 0.
        let mut s = state(1000);
        s.value.next_multi = u32::MAX;
        s.advance_multi(u32::MAX, 10, 3);
        assert_eq!(s.value.next_multi, 1);
    }

    #[test]
    fn checkpoint_records_never_move_counters_back() {
        let mut s = state(5000);
        s.set_next_oid(30000);
        let mut online = state(4000).value;
        online.next_oid = 20000;
        online.oldest_xid = 700;
        s.apply_checkpoint_record(&online, false);
        assert_eq!(s.value.next_xid, 5000);
        assert_eq!(s.value.next_oid, 30000);
        assert_eq!(s.value.oldest_xid, 700);
        let mut shutdown = state(6000).value;
        shutdown.next_oid = 24000;
        s.apply_checkpoint_record(&shutdown, true);
        assert_eq!(s.value.next_xid, 6000);
        assert_eq!(s.value.next_oid, 24000);
    }
}
