//! Redo of the XLOG records that carry pages: `XLOG_FPI` and
//! `XLOG_FPI_FOR_HINT`. Their images are always marked for apply, and
//! [`crate::apply`] restores those before dispatching here. A hint record
//! written with `full_page_writes = off` has no image and changes nothing
//! ([`is_hint_record`]; [`crate::apply`] returns before dispatching); an
//! `XLOG_FPI` block reaching this module came without its image, which
//! PostgreSQL refuses too.

use postgres_wal::record::DecodedRecord;
use postgres_wal::rmgr::xlog::{XLOG_FPI, XLOG_FPI_FOR_HINT};
use postgres_wal::rmgr::RmgrId;

use crate::page::Page;
use crate::{RedoContext, RedoError};

/// Whether `record` is an `XLOG_FPI_FOR_HINT`. A block of it without an
/// image (written with `full_page_writes = off`) changes nothing:
/// PostgreSQL's redo skips it and leaves even the page LSN alone.
pub fn is_hint_record(record: &DecodedRecord) -> bool {
    record.rmid == RmgrId::Xlog as u8 && record.rmgr_info() == XLOG_FPI_FOR_HINT
}

/// Applies an XLOG record to the block in `context`.
pub fn redo(_page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    match context.record.rmgr_info() {
        XLOG_FPI => Err(RedoError::Inconsistent(
            "full-page-image record block has no image to restore",
        )),
        info => Err(RedoError::Unsupported {
            rmgr: RmgrId::Xlog.name(),
            info,
        }),
    }
}
