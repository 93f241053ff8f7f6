//! Native redo for PostgreSQL 15 resource managers (no I/O): given the previous
//! version of a page and a decoded WAL record, produce the next version.
//!
//! The crate also owns page masking ([`mask`]), equal in effect to what
//! Postgres masks when it checks WAL consistency, and the visibility-map
//! changes heap records imply for pages they do not register ([`vm`]).
//!
//! ```text
//! previous page ──apply(record, block_id)──▶ next page
//! mask(rmgr, next) == mask(rmgr, record's after-image)   (the oracle)
//! ```
//!
//! [`NATIVE_RMGRS`] is the one list of managers whose redo passed that
//! oracle on real PostgreSQL 15 WAL; an endpoint runs with
//! `wal_consistency_checking` = [`wal_consistency_checking_value`] (the
//! others), so records of those managers always carry their after-images.

pub mod brin;
pub mod btree;
pub mod check;
pub mod generic;
pub mod gin;
pub mod gist;
pub mod hash;
pub mod heap;
pub mod heap2;
pub mod mask;
pub mod page;
pub mod sequence;
pub mod spgist;
pub mod tuple;
pub mod vm;
pub mod xlog;

use postgres_wal::record::{DecodedBlock, DecodedRecord, BLCKSZ};
use postgres_wal::rmgr::heap::BodyError;
use postgres_wal::rmgr::RmgrId;
use thiserror::Error;

pub use mask::mask;
pub use page::{Page, PageError};

/// Resource managers whose native redo passes the after-image oracle with
/// zero mismatches (see `crates/redo/tests/oracle.rs` and
/// `oracle_index_ams.rs`) on PostgreSQL 15.18. (Servers from 15.19 on no
/// longer set GiST's unused `F_TUPLES_DELETED` flag in VACUUM; see
/// docs/redo.md.)
pub const NATIVE_RMGRS: &[RmgrId] = &[
    RmgrId::Xlog,
    RmgrId::Heap,
    RmgrId::Heap2,
    RmgrId::Btree,
    RmgrId::Sequence,
    RmgrId::Brin,
    RmgrId::Generic,
    RmgrId::Hash,
    RmgrId::Gin,
    RmgrId::Gist,
    RmgrId::SpGist,
];

/// Whether records of raw resource manager id `rmid` can be redone natively
/// (ingest may then drop their consistency-check images).
pub fn is_native(rmid: u8) -> bool {
    RmgrId::from_u8(rmid).is_some_and(|id| NATIVE_RMGRS.contains(&id))
}

/// Managers that have a mask function, i.e. those `wal_consistency_checking`
/// accepts by name, with the name Postgres accepts.
const CHECKABLE_RMGRS: &[(RmgrId, &str)] = &[
    (RmgrId::Heap2, "heap2"),
    (RmgrId::Heap, "heap"),
    (RmgrId::Btree, "btree"),
    (RmgrId::Hash, "hash"),
    (RmgrId::Gin, "gin"),
    (RmgrId::Gist, "gist"),
    (RmgrId::Sequence, "sequence"),
    (RmgrId::SpGist, "spgist"),
    (RmgrId::Brin, "brin"),
    (RmgrId::Generic, "generic"),
];

/// The `wal_consistency_checking` value naming every checkable manager not
/// in `native` (comma separated, Postgres spelling); empty when all are
/// native.
pub fn wal_consistency_checking_for(native: &[RmgrId]) -> String {
    CHECKABLE_RMGRS
        .iter()
        .filter(|(id, _)| !native.contains(id))
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The `wal_consistency_checking` value for [`NATIVE_RMGRS`].
pub fn wal_consistency_checking_value() -> String {
    wal_consistency_checking_for(NATIVE_RMGRS)
}

/// Why a record could not be applied to a page.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RedoError {
    #[error("page: {0}")]
    Page(#[from] PageError),
    #[error("record body: {0}")]
    Body(#[from] BodyError),
    #[error("record has no block reference {0}")]
    NoBlock(u8),
    #[error("{rmgr} record type {info:#04x} has no native redo")]
    Unsupported { rmgr: &'static str, info: u8 },
    #[error("record does not fit the page: {0}")]
    Inconsistent(&'static str),
}

/// The record and block being redone, handed to each manager's routine.
pub struct RedoContext<'r> {
    pub record: &'r DecodedRecord,
    pub block: &'r DecodedBlock,
}

impl RedoContext<'_> {
    /// The block data registered with this block (may be empty).
    pub fn data(&self) -> &[u8] {
        &self.block.data
    }
}

/// Applies `record`'s change to block `block_id` on `page` (the block's
/// previous version; ignored for will-init blocks), leaving the page as
/// Postgres's redo would, page LSN = the record's end LSN.
///
/// An image marked for apply is restored as is. A consistency-check image
/// (not for apply) is ignored: the change is computed natively.
pub fn apply(page: &mut [u8], record: &DecodedRecord, block_id: u8) -> Result<(), RedoError> {
    let mut page = Page::new(page)?;
    let block = record.block(block_id).ok_or(RedoError::NoBlock(block_id))?;
    if let Some(image) = block.image.as_ref().filter(|image| image.apply) {
        if image.page.len() != BLCKSZ {
            return Err(PageError::WrongSize(image.page.len()).into());
        }
        page.bytes_mut().copy_from_slice(&image.page);
        if !page.is_new() {
            page.set_lsn(record.end_lsn.0);
        }
        return Ok(());
    }
    if xlog::is_hint_record(record) {
        // Without its image: nothing changes, not even the LSN.
        return Ok(());
    }
    let context = RedoContext { record, block };
    let rmgr = RmgrId::from_u8(record.rmid);
    match rmgr {
        Some(RmgrId::Xlog) => xlog::redo(&mut page, &context)?,
        Some(RmgrId::Heap) => heap::redo(&mut page, &context)?,
        Some(RmgrId::Heap2) => heap2::redo(&mut page, &context)?,
        Some(RmgrId::Btree) => btree::redo(&mut page, &context)?,
        Some(RmgrId::Sequence) => sequence::redo(&mut page, &context)?,
        Some(RmgrId::Generic) => generic::redo(&mut page, &context)?,
        Some(RmgrId::Brin) => brin::redo(&mut page, &context)?,
        Some(RmgrId::Hash) => hash::redo(&mut page, &context)?,
        Some(RmgrId::Gist) => gist::redo(&mut page, &context)?,
        Some(RmgrId::Gin) => gin::redo(&mut page, &context)?,
        Some(RmgrId::SpGist) => spgist::redo(&mut page, &context)?,
        _ => {
            return Err(RedoError::Unsupported {
                rmgr: rmgr.map_or("unknown", RmgrId::name),
                info: record.rmgr_info(),
            })
        }
    }
    page.set_lsn(record.end_lsn.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_value_lists_the_non_native_managers() {
        // Every manager with a mask function is native: endpoints need no
        // consistency checking at all.
        assert_eq!(wal_consistency_checking_value(), "");
        assert_eq!(
            wal_consistency_checking_for(&[RmgrId::Heap, RmgrId::Heap2, RmgrId::Btree]),
            "hash,gin,gist,sequence,spgist,brin,generic"
        );
        assert!(is_native(RmgrId::Heap as u8) && is_native(RmgrId::Hash as u8));
        assert!(is_native(RmgrId::Gin as u8) && is_native(RmgrId::SpGist as u8));
        assert!(!is_native(RmgrId::Transaction as u8));
        assert!(!is_native(200));
        assert_eq!(
            wal_consistency_checking_for(&[]),
            "heap2,heap,btree,hash,gin,gist,sequence,spgist,brin,generic"
        );
    }
}
