//! Per resource manager / record type counters, in the categories of
//! `pg_waldump --stats=record` (`XLogRecStoreStats` in `xlogstats.c`).
//!
//! "Record size" is `xl_tot_len` minus the stored full-page-image bytes and
//! "FPI size" is the sum of `bimg_len` over the record's images, exactly as
//! PostgreSQL counts them.

use crate::decode::RecordLayout;
use crate::rmgr::identify::{rmgr_name, stats_record_id, stats_record_type_name};
use crate::Lsn;

/// Counters of one record type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeStats {
    pub count: u64,
    pub record_bytes: u64,
    pub fpi_bytes: u64,
}

/// One output row: a resource manager / record type that occurred.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsRow {
    /// Resource manager name as `pg_waldump` prints it (`Heap`, `XLOG`, …).
    pub rmgr: String,
    /// Record type as `pg_waldump --stats=record` prints it (`INSERT+INIT`).
    pub record_type: String,
    pub count: u64,
    pub record_bytes: u64,
    pub fpi_bytes: u64,
}

/// Accumulated statistics over a range of WAL.
#[derive(Clone, Debug)]
pub struct WalStats {
    /// Indexed by `rmid * 16 + recid`.
    per_type: Vec<TypeStats>,
    /// Start of the first record counted.
    pub start: Option<Lsn>,
    /// End of the last record counted.
    pub end: Option<Lsn>,
}

impl Default for WalStats {
    fn default() -> Self {
        WalStats {
            per_type: vec![TypeStats::default(); 256 * 16],
            start: None,
            end: None,
        }
    }
}

impl WalStats {
    /// Empty statistics.
    pub fn new() -> WalStats {
        WalStats::default()
    }

    /// Counts one record from its parsed layout.
    pub fn add(&mut self, layout: &RecordLayout, start: Lsn, end: Lsn) {
        let fpi = u64::from(layout.fpi_len());
        let total = u64::from(layout.header.total_len);
        let rmid = layout.header.rmid;
        let recid = stats_record_id(rmid, layout.header.info);
        let slot = &mut self.per_type[usize::from(rmid) * 16 + usize::from(recid)];
        slot.count += 1;
        slot.record_bytes += total.saturating_sub(fpi);
        slot.fpi_bytes += fpi;
        self.start.get_or_insert(start);
        self.end = Some(end);
    }

    /// Total number of records counted.
    pub fn total_count(&self) -> u64 {
        self.per_type.iter().map(|t| t.count).sum()
    }

    /// The record types that occurred, in `pg_waldump` order (by resource
    /// manager id, then record type id).
    pub fn rows(&self) -> Vec<StatsRow> {
        self.per_type
            .iter()
            .enumerate()
            .filter(|(_, t)| t.count > 0)
            .map(|(i, t)| {
                let rmid = (i / 16) as u8;
                let recid = (i % 16) as u8;
                StatsRow {
                    rmgr: rmgr_name(rmid),
                    record_type: stats_record_type_name(rmid, recid),
                    count: t.count,
                    record_bytes: t.record_bytes,
                    fpi_bytes: t.fpi_bytes,
                }
            })
            .collect()
    }
}
